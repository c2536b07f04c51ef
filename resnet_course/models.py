"""The networks the lessons train: plain and residual twins in the CIFAR layout of He et al. (2016), section 4.2.

Depth is 6n + 2: a 3x3 stem convolution, three stages of n blocks (two 3x3 convolutions each) whose widths
double while the feature maps halve, then global average pooling and one linear layer. Downsampling shortcuts
use the paper's parameter-free option A: subsample the input and pad the new channels with zeros.
`preact_resnet` builds the same layout from the pre-activation units of He et al.'s follow-up paper (2016).
"""
from torch import nn
from torch.nn import functional as F


class PaddedShortcut(nn.Module):
    """Option A: keep every `stride`-th pixel and append zero channels up to `out_channels`."""

    def __init__(self, out_channels, stride):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


def conv3x3(in_channels, out_channels, stride=1, bias=False):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def norm_layer(channels, batch_norm):
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class ResidualUnit(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the (option A) shortcut, then ReLU."""

    def __init__(self, in_channels, out_channels, stride, batch_norm=True, conv_bias=False):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, conv_bias)
        self.norm1 = norm_layer(out_channels, batch_norm)
        self.conv2 = conv3x3(out_channels, out_channels, 1, conv_bias)
        self.norm2 = norm_layer(out_channels, batch_norm)
        needs_reshape = stride != 1 or in_channels != out_channels
        self.skip = PaddedShortcut(out_channels, stride) if needs_reshape else nn.Identity()

    def branch(self, x):
        """F(x): what the block adds to its shortcut."""
        return self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))

    def forward(self, x):
        return F.relu(self.branch(x) + self.skip(x))


def cifar_style_net(depth, residual=True, widths=(8, 16, 32), in_channels=1, num_classes=10,
                    batch_norm=True, init="he", conv_bias=False):
    """A 6n+2-layer network; `init` is "he" (Kaiming normal, as in the paper) or "default" (PyTorch's own).

    The residual network is a sequence of ResidualUnits; its plain twin is the same layers laid out flat, in the
    same order, so that both draw the same initial weights from the same seed.
    """
    if init not in ("he", "default"):
        raise ValueError(f'init must be "he" or "default", got {init!r}')
    layers = [conv3x3(in_channels, widths[0], bias=conv_bias), norm_layer(widths[0], batch_norm), nn.ReLU()]
    for channels, width, stride in block_plan(depth, widths):
        if residual:
            layers.append(ResidualUnit(channels, width, stride, batch_norm, conv_bias))
        else:
            layers += [conv3x3(channels, width, stride, conv_bias), norm_layer(width, batch_norm), nn.ReLU(),
                       conv3x3(width, width, 1, conv_bias), norm_layer(width, batch_norm), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)]
    net = nn.Sequential(*layers)
    if init == "he":
        he_init(net)
    return net


def block_plan(depth, widths):
    """(in_channels, out_channels, stride) of every block of a 6n+2-layer network, from the input side.

    Three stages of n blocks; the first block of stages 2 and 3 halves the feature maps and widens them.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}")
    blocks_per_stage = (depth - 2) // 6
    channels = widths[0]
    plan = []
    for stage, width in enumerate(widths):
        for index in range(blocks_per_stage):
            plan.append((channels, width, 2 if stage > 0 and index == 0 else 1))
            channels = width
    return plan


def he_init(net):
    """Kaiming normal initialisation of every convolution (fan_out, for ReLU), as in He et al. (2016)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def block_ends(net):
    """The layers of a cifar_style_net whose outputs end its stem, each of its blocks, and the network (the logits).

    A residual network's blocks are its ResidualUnits; its plain twin has the same layers laid out flat, so there
    every second ReLU after the stem's ends a block.
    """
    relus = [layer for layer in net if isinstance(layer, nn.ReLU)]
    units = [layer for layer in net if isinstance(layer, ResidualUnit)]
    return relus[:1] + (units or relus[2::2]) + [layer for layer in net if isinstance(layer, nn.Linear)]


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class PreActUnit(nn.Module):
    """The pre-activation unit of He et al. (2016), "Identity Mappings in Deep Residual Networks":
    BN-ReLU-conv-BN-ReLU-conv, plus the (option A) shortcut, and nothing after the addition."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        needs_reshape = stride != 1 or in_channels != out_channels
        self.skip = PaddedShortcut(out_channels, stride) if needs_reshape else nn.Identity()

    def branch(self, x):
        """F(x): what the unit adds to its shortcut."""
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))

    def forward(self, x):
        return self.branch(x) + self.skip(x)


def preact_resnet(depth, widths=(8, 16, 32), in_channels=1, num_classes=10):
    """The pre-activation twin of `cifar_style_net(depth, residual=True)`, with He initialisation.

    The stem is a bare convolution, since every unit normalises its own input; as the signal leaves the last
    unit un-normalised, one BN-ReLU comes before the pooling. From the same seed, the convolutions start with
    the same weights as the original network's.
    """
    layers = [conv3x3(in_channels, widths[0])]
    layers += [PreActUnit(channels, width, stride) for channels, width, stride in block_plan(depth, widths)]
    layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(widths[-1], num_classes)]
    net = nn.Sequential(*layers)
    he_init(net)
    return net
