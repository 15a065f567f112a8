# shellcheck shell=bash
# The --help of every script in deploy/ and bench/, sourced (never run) after `root=` is set:
#   source "$root/deploy/lib/usage.sh"
# A script's usage text is its header comment (the '#' lines after the shebang, up to the first
# line that is not a comment, with "# " stripped), so the file and --help never disagree. The
# header states what the script does, its arguments, its environment variables and its exit
# codes. Contract for every script: -h/--help prints the usage to stdout and exits 0 before
# anything is started; an unknown option prints the usage to stderr and exits 2.
# (Python scripts do the same with argparse and description=__doc__.)

# Prints the running script's header comment.
usage() {
  awk 'NR == 1 && /^#!/ { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

# Prints "NAME: MESSAGE" and the usage to stderr; exits 2.
usage_error() {
  echo "$(basename "$0"): $*" >&2
  usage >&2
  exit 2
}

# For scripts whose only option is --help: handles -h/--help, rejects every other option (any
# argument starting with '-'), and leaves the positional arguments to the script.
usage_only_help() {
  local arg
  for arg in "$@"; do
    case $arg in
      -h|--help) usage; exit 0 ;;
      -*) usage_error "unknown option '$arg'" ;;
    esac
  done
}

# For scripts whose arguments all go to cmake: handles -h/--help, accepts -DVAR=VALUE and -UVAR,
# rejects anything else.
usage_cmake_args() {
  local arg
  for arg in "$@"; do
    case $arg in
      -h|--help) usage; exit 0 ;;
      -D?*|-U?*) ;;
      *) usage_error "unknown argument '$arg' (only -DVAR=VALUE and -UVAR go to cmake)" ;;
    esac
  done
}
