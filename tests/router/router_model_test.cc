// LoadRouterModel's identity: what workers must match to register.

#include "router/router_model.h"

#include <string>

#include "common/model/model_fingerprint.h"
#include "gtest/gtest.h"

namespace pdserve::router {
namespace {

std::string Shared(const std::string& name) {
  return std::string(PDSERVE_SHARED_DIR) + "/models/" + name;
}

TEST(RouterModelTest, GgufIdentityIsTheFingerprintAndTheKvShapeOfTheMetadata) {
  absl::StatusOr<RouterModel> model = LoadRouterModel(Shared("stories260K.gguf"), "");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->identity.file_name, "stories260K.gguf");
  EXPECT_EQ(model->identity.fingerprint, *model::ModelFingerprint(Shared("stories260K.gguf"), ""));
  // stories260K: dim 64, 8 heads, 4 KV heads, 5 layers.
  EXPECT_EQ(model->identity.n_layers, 5);
  EXPECT_EQ(model->identity.n_kv_heads, 4);
  EXPECT_EQ(model->identity.head_dim, 8);
}

TEST(RouterModelTest, Llama2cIdentityComesFromTheHeaderAndHashesTheTokenizer) {
  absl::StatusOr<RouterModel> model =
      LoadRouterModel(Shared("stories260K.bin"), Shared("tok512.bin"));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->identity.file_name, "stories260K.bin");
  EXPECT_EQ(model->identity.fingerprint,
            *model::ModelFingerprint(Shared("stories260K.bin"), Shared("tok512.bin")));
  EXPECT_EQ(model->identity.n_layers, 5);
  EXPECT_EQ(model->identity.n_kv_heads, 4);
  EXPECT_EQ(model->identity.head_dim, 8);
  // The same model in another file is another fingerprint: the router refuses to mix them.
  EXPECT_NE(model->identity.fingerprint,
            LoadRouterModel(Shared("stories260K.gguf"), "")->identity.fingerprint);
}

}  // namespace
}  // namespace pdserve::router
