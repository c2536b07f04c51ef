"""Wrong networks."""
from . import case
from .templates import build_network

VISIBLE = "test_build_network_visible"
SIZE = "test_build_network_size"
SHAPES = "test_build_network_shapes"
OPTIONS = "test_build_network_options"

CASES = [
    case("bn_no_downsampling", "stride 1 everywhere (passes the visible tests)", loses={SHAPES, OPTIONS},
         build_network=build_network(stride="1")),
    case("bn_downsamples_every_stage_start", "stride 2 also at the start of the first stage",
         loses={VISIBLE, SHAPES, OPTIONS}, build_network=build_network(stride="2 if index == 0 else 1")),
    case("bn_downsamples_every_block", "stride 2 in every block of the later stages",
         loses={VISIBLE, SHAPES}, build_network=build_network(stride="2 if stage > 0 else 1")),
    case("bn_one_block_per_stage", "ignores blocks_per_stage", loses={VISIBLE, SIZE, SHAPES},
         build_network=build_network(blocks="range(1)")),
    case("bn_extra_block", "one block too many per stage", loses={VISIBLE, SIZE, SHAPES, OPTIONS},
         build_network=build_network(blocks="range(blocks_per_stage + 1)")),
    case("bn_blocks_in_total", "blocks_per_stage blocks in all, not per stage",
         loses={VISIBLE, SIZE, SHAPES}, build_network=build_network(blocks="range(max(1, blocks_per_stage // 3))")),
    case("bn_ignores_residual", "always ResidualBlocks", loses={VISIBLE, SIZE, OPTIONS},
         build_network=build_network(block="ResidualBlock")),
    case("bn_always_plain", "always PlainBlocks", loses={VISIBLE, SIZE, OPTIONS},
         build_network=build_network(block="PlainBlock")),
    case("bn_stem_without_batchnorm", "a stem without BatchNorm", loses={VISIBLE, SIZE, OPTIONS},
         build_network=build_network(stem="nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False), "
                                          "nn.ReLU()")),
    case("bn_stem_without_relu", "a stem without ReLU (passes the visible tests)", loses={SHAPES, OPTIONS},
         build_network=build_network(stem="nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False), "
                                          "nn.BatchNorm2d(widths[0])")),
    case("bn_stem_with_bias", "a stem convolution with a bias", loses={VISIBLE, SIZE, OPTIONS},
         build_network=build_network(stem="nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1), "
                                          "nn.BatchNorm2d(widths[0]), nn.ReLU()")),
    case("bn_stem_without_padding", "a stem convolution without padding (passes the visible tests)",
         loses={SHAPES, OPTIONS},
         build_network=build_network(stem="nn.Conv2d(in_channels, widths[0], kernel_size=3, bias=False), "
                                          "nn.BatchNorm2d(widths[0]), nn.ReLU()")),
    case("bn_ignores_in_channels", "a stem for one input channel whatever in_channels says",
         loses={VISIBLE, SIZE, SHAPES, OPTIONS},
         build_network=build_network(stem="nn.Conv2d(1, widths[0], kernel_size=3, padding=1, bias=False), "
                                          "nn.BatchNorm2d(widths[0]), nn.ReLU()")),
    case("bn_max_pooling", "global max pooling instead of average pooling (passes the visible tests)",
         loses={SHAPES, OPTIONS},
         build_network=build_network(head="nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)")),
    case("bn_softmax", "returns probabilities, not logits (passes the visible tests)", loses={SHAPES, OPTIONS},
         build_network=build_network(head="nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes), "
                                          "nn.Softmax(dim=1)")),
    case("bn_fixed_pool_size", "nn.AvgPool2d(8): works for 32x32 inputs only", loses={VISIBLE, SHAPES, OPTIONS},
         build_network=build_network(head="nn.AvgPool2d(8), nn.Flatten(), nn.Linear(channels, num_classes)")),
    case("bn_no_pooling", "flattens the whole last feature map into the Linear layer",
         loses={VISIBLE, SHAPES, OPTIONS},
         build_network=build_network(head="nn.Flatten(), nn.Linear(channels * 8 * 8, num_classes)")),
    case("bn_ignores_num_classes", "always 10 classes (passes the visible tests)", loses={OPTIONS},
         build_network=build_network(head="nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)")),
    case("bn_hardcoded_widths", "always widths 16, 32, 64 (passes the visible tests)", loses={SHAPES, OPTIONS},
         build_network=build_network(stages="enumerate((16, 32, 64))").replace(
             "nn.Conv2d(in_channels, widths[0]", "nn.Conv2d(in_channels, 16").replace(
             "nn.BatchNorm2d(widths[0])", "nn.BatchNorm2d(16)").replace("channels = widths[0]", "channels = 16")),
    case("bn_three_stages_only", "always three stages (passes the visible tests)", loses={OPTIONS},
         build_network=build_network(stages="enumerate(widths[:3])")),
    case("bn_moves_input_to_cpu", "a network whose forward calls x.cpu() (passes on a CPU)", loses={OPTIONS},
         build_network="""
        class Network(nn.Module):
            def __init__(self, body):
                super().__init__()
                self.body = body

            def forward(self, x):
                return self.body(x.cpu())


        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            block = ResidualBlock if residual else PlainBlock
            layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
            channels = widths[0]
            for stage, width in enumerate(widths):
                for index in range(blocks_per_stage):
                    layers.append(block(channels, width, 2 if stage > 0 and index == 0 else 1))
                    channels = width
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
            return Network(nn.Sequential(*layers))
        """),
]
