// summary(): the seed nets' numbers, exact shapes for Sequential nets, "?" where unknown.
#define BOOST_TEST_MODULE summary
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

namespace tf = torchfit;

namespace {
struct TwoLayerImpl : torch::nn::Module {
  TwoLayerImpl() : a(register_module("a", torch::nn::Linear(2, 3))), b(register_module("b", torch::nn::Linear(3, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return b(torch::relu(a(x))); }
  torch::nn::Linear a, b;
};
TORCH_MODULE(TwoLayer);
}  // namespace

BOOST_AUTO_TEST_CASE(linear_regression_net_has_3_params) {
  auto s = tf::summary(torch::nn::Linear(2, 1), torch::zeros({1, 2}));
  BOOST_TEST(s.rows.size() == 1u);
  BOOST_TEST(s.rows[0].layer == "Linear-1");
  BOOST_TEST(s.rows[0].output_shape == "[-1, 1]");
  BOOST_TEST(s.rows[0].params == 3);
  BOOST_TEST(s.total_params == 3);
  BOOST_TEST(s.trainable_params == 3);
}

BOOST_AUTO_TEST_CASE(ring_dnn_has_12_40_9_params_and_exact_shapes) {
  torch::nn::Sequential net(torch::nn::Linear(2, 4), torch::nn::ReLU(), torch::nn::Linear(4, 8), torch::nn::ReLU(),
                            torch::nn::Linear(8, 1));
  auto s = tf::summary(net, torch::zeros({5, 2}));
  std::vector<std::string> shapes, layers;
  std::vector<int64_t> params;
  for (const auto& r : s.rows) {
    layers.push_back(r.layer);
    shapes.push_back(r.output_shape);
    params.push_back(r.params);
  }
  BOOST_TEST(layers == std::vector<std::string>({"Linear-1", "ReLU-2", "Linear-3", "ReLU-4", "Linear-5"}),
             boost::test_tools::per_element());
  BOOST_TEST(shapes == std::vector<std::string>({"[-1, 4]", "[-1, 4]", "[-1, 8]", "[-1, 8]", "[-1, 1]"}),
             boost::test_tools::per_element());
  BOOST_TEST(params == std::vector<int64_t>({12, 0, 40, 0, 9}), boost::test_tools::per_element());
  BOOST_TEST(s.total_params == 61);
  const auto text = s.to_string();
  BOOST_TEST(text.find("Layer (type)") != std::string::npos);
  BOOST_TEST(text.find("Total params: 61") != std::string::npos);
  BOOST_TEST(text.find("Non-trainable params: 0") != std::string::npos);
  BOOST_TEST(text.find("Params size (MB): 0.000233") != std::string::npos);  // 61 * 4 bytes
}

BOOST_AUTO_TEST_CASE(frozen_parameters_are_non_trainable) {
  torch::nn::Linear net(2, 1);
  net->bias.set_requires_grad(false);
  auto s = tf::summary(net, torch::zeros({1, 2}));
  BOOST_TEST(s.trainable_params == 2);
  BOOST_TEST(s.non_trainable_params == 1);
}

BOOST_AUTO_TEST_CASE(custom_module_shows_unknown_shapes_not_guesses) {
  auto s = tf::summary(TwoLayer(), torch::zeros({1, 2}));
  BOOST_TEST(s.rows.size() == 2u);
  BOOST_TEST(s.rows[0].output_shape == "?");
  BOOST_TEST(s.rows[0].params == 9);
  BOOST_TEST(s.total_params == 13);
  BOOST_TEST(s.to_string().find("Forward/backward pass size (MB): ?") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(wrong_input_width_is_a_data_error) {
  BOOST_CHECK_THROW(tf::summary(torch::nn::Linear(2, 1), torch::zeros({1, 3})), tf::DataError);
}

namespace {
// An image and a side vector in, one score out.
struct TwoInputsImpl : torch::nn::Module {
  TwoInputsImpl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 2, 3)))),
        fc(register_module("fc", torch::nn::Linear(2 * 2 * 2 + 3, 1))) {}
  torch::Tensor forward(const torch::Tensor& image, const torch::Tensor& side) {
    return fc(torch::cat({conv(image).flatten(1), side}, 1));
  }
  torch::nn::Conv2d conv;
  torch::nn::Linear fc;
};
TORCH_MODULE(TwoInputs);
}  // namespace

BOOST_AUTO_TEST_CASE(a_net_of_several_inputs_is_summarized_from_an_example_batch) {
  const auto example = tf::Batch(tf::Fields().add_input("image", torch::zeros({1, 1, 4, 4})).add_input("side", torch::zeros({1, 3})));
  auto s = tf::summary(tf::Net(TwoInputs()), example);
  BOOST_TEST(s.rows.size() == 2u);
  BOOST_TEST(s.total_params == (2 * 9 + 2) + (11 + 1));
  BOOST_TEST(s.input_mb == (16 + 3) * 4.0 / (1024 * 1024));  // both inputs count
  // The wrong number of inputs, or one of the wrong shape, is a clear error.
  const auto one = tf::Batch(tf::Fields().add_input("image", torch::zeros({1, 1, 4, 4})));
  BOOST_CHECK_THROW(tf::summary(tf::Net(TwoInputs()), one), tf::Error);
  const auto wide = tf::Batch(tf::Fields().add_input("image", torch::zeros({1, 1, 4, 4})).add_input("side", torch::zeros({1, 5})));
  const auto msg = test::error_of([&] { tf::summary(tf::Net(TwoInputs()), wide); });
  BOOST_TEST(msg.find("summary: the net cannot take image [1, 1, 4, 4] Float, side [1, 5] Float") == 0, msg);
}
