"""Wrong shortcuts."""
from . import case
from .templates import make_shortcut

VISIBLE = "test_make_shortcut_visible"
IDENTITY = "test_make_shortcut_identity"
PROJECTION = "test_make_shortcut_projection"

# Identities that look harmless; the template's projection handles the shapes that change.
DETACHED_IDENTITY = """class Detached(nn.Module):
    def forward(self, x):
        return x.detach()


"""
CPU_IDENTITY = """class Identity(nn.Module):
    def forward(self, x):
        return x + torch.zeros(x.shape)


"""

CASES = [
    case("ms_always_identity", "the identity even when the shape changes", loses={VISIBLE, PROJECTION},
         make_shortcut="""
        def make_shortcut(in_channels, out_channels, stride=1):
            return nn.Identity()
        """),
    case("ms_ignores_stride", "the identity whenever the channels match, even with stride 2 (passes the visible "
         "tests)", loses={PROJECTION}, make_shortcut=make_shortcut(condition="in_channels == out_channels")),
    case("ms_projection_without_stride", "the 1x1 projection without the stride", loses={VISIBLE, PROJECTION},
         make_shortcut=make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), "
                                                "nn.BatchNorm2d(out_channels)")),
    case("ms_projection_without_batchnorm", "a 1x1 convolution without BatchNorm (passes the visible tests)",
         loses={PROJECTION},
         make_shortcut=make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, "
                                                "bias=False)")),
    case("ms_projection_3x3", "a 3x3 projection instead of 1x1 (passes the visible tests)", loses={PROJECTION},
         make_shortcut=make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, "
                                                "padding=1, bias=False), nn.BatchNorm2d(out_channels)")),
    case("ms_projection_with_bias", "the 1x1 convolution keeps its bias (passes the visible tests)",
         loses={PROJECTION},
         make_shortcut=make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride), "
                                                "nn.BatchNorm2d(out_channels)")),
    case("ms_batchnorm_before_conv", "BatchNorm on the input, then the 1x1 convolution (passes the visible tests)",
         loses={PROJECTION},
         make_shortcut=make_shortcut(projection="nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, "
                                                "kernel_size=1, stride=stride, bias=False)")),
    case("ms_projection_padding", "the 1x1 projection with padding=1", loses={VISIBLE, PROJECTION},
         make_shortcut=make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, "
                                                "padding=1, bias=False), nn.BatchNorm2d(out_channels)")),
    case("ms_always_projection", "a projection even when no shape changes", loses={VISIBLE, IDENTITY},
         make_shortcut="""
        def make_shortcut(in_channels, out_channels, stride=1):
            return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                                 nn.BatchNorm2d(out_channels))
        """),
    case("ms_identity_detached", "an identity that cuts the gradient (passes the visible tests)", loses={IDENTITY},
         make_shortcut=DETACHED_IDENTITY + make_shortcut(identity="Detached()")),
    case("ms_projection_no_grad", "a projection computed under torch.no_grad() (passes the visible tests)",
         loses={PROJECTION}, make_shortcut="""
        class FrozenProjection(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
                self.bn = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                with torch.no_grad():
                    return self.bn(self.conv(x))


        def make_shortcut(in_channels, out_channels, stride=1):
            if in_channels == out_channels and stride == 1:
                return nn.Identity()
            return FrozenProjection(in_channels, out_channels, stride)
        """),
    case("ms_identity_relu", "an 'identity' that applies a ReLU", loses={VISIBLE, IDENTITY},
         make_shortcut=make_shortcut(identity="nn.ReLU()")),
    case("ms_identity_fixed_device", "an identity that adds a tensor made on the CPU (passes on a CPU)",
         loses={IDENTITY}, make_shortcut=CPU_IDENTITY + make_shortcut(identity="Identity()")),
    case("ms_projection_calls_cpu", "a projection whose forward calls .cpu() (passes on a CPU)",
         loses={PROJECTION}, make_shortcut="""
        class Projection(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
                self.bn = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                return self.bn(self.conv(x)).cpu()


        def make_shortcut(in_channels, out_channels, stride=1):
            if in_channels == out_channels and stride == 1:
                return nn.Identity()
            return Projection(in_channels, out_channels, stride)
        """),
    case("ms_average_pool_projection", "average pooling instead of the strided 1x1 convolution (passes the visible "
         "tests)", loses={PROJECTION},
         make_shortcut=make_shortcut(projection="nn.AvgPool2d(stride) if stride > 1 else nn.Identity(), "
                                                "nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), "
                                                "nn.BatchNorm2d(out_channels)")),
]
