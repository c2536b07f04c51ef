"""Correct answers written in other styles than the reference: each must keep full marks."""
from . import case

CASES = [
    case("ok_sequential_branch", "the branch as one nn.Sequential, nn.ReLU modules, nn.Sequential projection with "
         "tuple arguments, the network built from nested stage Sequentials with an OrderedDict",
         conv_output_size="""
        import math

        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return int(math.floor((size + 2 * padding - kernel_size) / stride)) + 1
        """,
         make_shortcut="""
        def make_shortcut(in_channels, out_channels, stride=1):
            if stride != 1 or in_channels != out_channels:
                return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=(1, 1), stride=(stride, stride),
                                               padding=(0, 0), bias=False),
                                     nn.BatchNorm2d(num_features=out_channels))
            return nn.Sequential()  # an empty Sequential returns its input
        """,
         ResidualBlock="""
        class ResidualBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.branch = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, (3, 3), (stride, stride), (1, 1), bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(out_channels, out_channels, (3, 3), (1, 1), (1, 1), bias=False),
                    nn.BatchNorm2d(out_channels),
                )
                self.shortcut = make_shortcut(in_channels, out_channels, stride)
                self.out_relu = nn.ReLU(inplace=True)

            def forward(self, x):
                out = self.branch(x)
                out += self.shortcut(x)  # out is a new tensor: adding in place is safe
                return self.out_relu(out)
        """,
         PlainBlock="""
        class PlainBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.layers = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                    nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                )

            def forward(self, x):
                return self.layers(x)
        """,
         build_network="""
        from collections import OrderedDict

        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            Block = ResidualBlock if residual else PlainBlock
            parts = OrderedDict(stem=nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)))
            channels = widths[0]
            for number, width in enumerate(widths):
                blocks = []
                for index in range(blocks_per_stage):
                    blocks.append(Block(channels, width, stride=2 if number and not index else 1))
                    channels = width
                parts[f"stage{number + 1}"] = nn.Sequential(*blocks)
            parts["pool"] = nn.AdaptiveAvgPool2d((1, 1))
            parts["flatten"] = nn.Flatten(1)
            parts["fc"] = nn.Linear(channels, num_classes)
            return nn.Sequential(parts)
        """),
    case("ok_module_dict_functional", "layers in an nn.ModuleDict registered in another order, functional ReLU, "
         "torch.add, the shortcut computed first, a custom Identity module, a hand-written network module with "
         "x.mean for the pooling",
         make_shortcut="""
        class Identity(nn.Module):
            def forward(self, x):
                return x


        class Projection(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.norm = nn.BatchNorm2d(out_channels)  # registered before the convolution it follows
                self.mix = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

            def forward(self, x):
                return self.norm(self.mix(x))


        def make_shortcut(in_channels, out_channels, stride=1):
            if (in_channels, stride) == (out_channels, 1):
                return Identity()
            return Projection(in_channels, out_channels, stride)
        """,
         ResidualBlock="""
        class ResidualBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.shortcut = make_shortcut(in_channels, out_channels, stride)
                self.layers = nn.ModuleDict({
                    "norm_b": nn.BatchNorm2d(out_channels),
                    "conv_b": nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                    "norm_a": nn.BatchNorm2d(out_channels),
                    "conv_a": nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                                        bias=False),
                })

            def forward(self, x):
                identity = self.shortcut(x)
                h = torch.relu(self.layers["norm_a"](self.layers["conv_a"](x)))
                h = self.layers["norm_b"](self.layers["conv_b"](h))
                return F.relu(torch.add(h, identity))
        """,
         build_network="""
        class Network(nn.Module):
            def __init__(self, blocks_per_stage, residual, in_channels, num_classes, widths):
                super().__init__()
                self.head = nn.Linear(widths[-1], num_classes)  # registered first, used last
                self.stem_conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
                self.stem_norm = nn.BatchNorm2d(widths[0])
                kind = ResidualBlock if residual else PlainBlock
                blocks, channels = [], widths[0]
                for stage, width in enumerate(widths):
                    for index in range(blocks_per_stage):
                        blocks.append(kind(channels, width, 2 if stage >= 1 and index == 0 else 1))
                        channels = width
                self.blocks = nn.ModuleList(blocks)

            def forward(self, x):
                x = F.relu(self.stem_norm(self.stem_conv(x)))
                for block in self.blocks:
                    x = block(x)
                return self.head(x.mean(dim=(2, 3)))


        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            return Network(blocks_per_stage, residual, in_channels, num_classes, tuple(widths))
        """),
    case("ok_shared_base_class", "one base class for both blocks, padding='same' on the stride-1 convolution, "
         "in-place ReLUs on fresh tensors, x.new_zeros, np.floor in conv_output_size",
         conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return int(np.floor((size + 2 * padding - kernel_size) / stride) + 1)
        """,
         ResidualBlock="""
        class TwoConvs(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.c1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
                self.n1 = nn.BatchNorm2d(out_channels)
                self.c2 = nn.Conv2d(out_channels, out_channels, 3, padding="same", bias=False)
                self.n2 = nn.BatchNorm2d(out_channels)

            def branch(self, x):
                return self.n2(self.c2(F.relu(self.n1(self.c1(x)), inplace=True)))


        class ResidualBlock(TwoConvs):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__(in_channels, out_channels, stride)
                self.shortcut = make_shortcut(in_channels, out_channels, stride)

            def forward(self, x):
                total = x.new_zeros(1) + self.branch(x) + self.shortcut(x)
                return total.clamp(min=0)
        """,
         PlainBlock="""
        class PlainBlock(TwoConvs):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__(in_channels, out_channels, stride)

            def forward(self, x):
                return F.relu(self.branch(x), inplace=True)  # in place on the BatchNorm's fresh output
        """),
    case("ok_plain_subclasses_residual", "PlainBlock as a subclass of ResidualBlock that drops the shortcut; the "
         "projection with the stride taken by slicing before a stride-1 1x1 convolution",
         make_shortcut="""
        class SubsampleThenProject(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.stride = stride
                self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
                self.bn = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                return self.bn(self.conv(x[:, :, ::self.stride, ::self.stride]))


        def make_shortcut(in_channels, out_channels, stride=1):
            if in_channels == out_channels and stride == 1:
                return nn.Identity()
            return SubsampleThenProject(in_channels, out_channels, stride)
        """,
         PlainBlock="""
        class PlainBlock(ResidualBlock):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__(in_channels, out_channels, stride)
                del self.shortcut

            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                return self.relu(self.bn2(self.conv2(out)))
        """),
    case("ok_residual_subclasses_plain", "ResidualBlock defined through a PlainBlock-like base, lists for widths",
         ResidualBlock="""
        class _Body(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)

            def body(self, x):
                return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


        class ResidualBlock(_Body):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__(in_channels, out_channels, stride)
                self.shortcut = make_shortcut(in_channels, out_channels, stride)

            def forward(self, x):
                return F.relu(self.shortcut(x) + self.body(x))
        """,
         PlainBlock="""
        class PlainBlock(_Body):
            def forward(self, x):
                return F.relu(self.body(x))
        """,
         build_network="""
        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            widths = list(widths)
            block = {True: ResidualBlock, False: PlainBlock}[bool(residual)]
            modules = [nn.Conv2d(in_channels, widths[0], kernel_size=(3, 3), padding=(1, 1), bias=False),
                       nn.BatchNorm2d(widths[0]), nn.ReLU()]
            for i, width in enumerate(widths):
                previous = widths[max(i - 1, 0)]
                modules.append(block(previous, width, 1 if i == 0 else 2))
                modules += [block(width, width) for _ in range(blocks_per_stage - 1)]
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)]
            return nn.Sequential(*modules)
        """),
]
