#!/usr/bin/env bash
# Makes throw-away certificates for the security tests (openssl CLI; nothing is committed):
#
#   make_test_certs.sh OUT_DIR
#
# OUT_DIR/ca.pem, ca.key             the cluster CA
# OUT_DIR/node.pem, node.key         a cluster certificate the CA signed, for 127.0.0.1 and
#                                    localhost, usable as server and client certificate
# OUT_DIR/expired.pem, expired.key   the same, signed by the CA, but expired
# OUT_DIR/stranger-ca.pem            another CA
# OUT_DIR/stranger.pem, stranger.key a certificate that other CA signed (same names)
# Keys are EC P-256, unencrypted. Exit 0 when every file is there, else non-zero.
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") echo "usage: $0 OUT_DIR" >&2; exit 2 ;;
esac
out=$1
mkdir -p "$out"
cd "$out"

ext=$(mktemp)
trap 'rm -f "$ext"' EXIT
cat >"$ext" <<'CONF'
subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
basicConstraints=CA:FALSE
CONF

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# make_ca NAME: NAME.pem and NAME.key, self-signed.
make_ca() {
  new_key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=pdserve test $1" -days 2 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# make_cert NAME CA DAYS: NAME.pem and NAME.key, signed by CA.pem; DAYS < 0 makes it expired.
make_cert() {
  local name=$1 ca=$2 days=$3
  new_key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=pdserve test $name" -out "$name.csr"
  if ((days > 0)); then
    openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
      -days "$days" -extfile "$ext" -out "$name.pem" 2>/dev/null
  else
    # `openssl x509` cannot date a certificate in the past; `openssl ca` can (1 day in 2020).
    local db=$name.ca
    mkdir -p "$db"; : >"$db/index.txt"; echo 01 >"$db/serial"
    cat >"$db/ca.conf" <<CONF
[ca]
default_ca=test
[test]
database=$db/index.txt
serial=$db/serial
new_certs_dir=$db
default_md=sha256
policy=any
copy_extensions=none
[any]
commonName=supplied
CONF
    openssl ca -batch -config "$db/ca.conf" -cert "$ca.pem" -keyfile "$ca.key" \
      -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$ext" \
      -in "$name.csr" -out "$name.pem" -notext 2>/dev/null
    rm -rf "$db"
  fi
  rm -f "$name.csr"
}

make_ca ca
make_cert node ca 2
make_cert expired ca -1
make_ca stranger-ca
make_cert stranger stranger-ca 2
rm -f ./*.srl
for f in ca.pem ca.key node.pem node.key expired.pem expired.key stranger-ca.pem stranger.pem \
         stranger.key; do
  [ -s "$f" ] || { echo "make_test_certs: $out/$f was not made" >&2; exit 1; }
done
