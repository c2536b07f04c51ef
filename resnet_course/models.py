"""The networks the lessons train: plain and residual twins in the CIFAR layout of He et al. (2016), section 4.2.

Depth is 6n + 2: a 3x3 stem convolution, three stages of n blocks (two 3x3 convolutions each) whose widths
double while the feature maps halve, then global average pooling and one linear layer. Downsampling shortcuts
use the paper's parameter-free option A: subsample the input and pad the new channels with zeros.
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

    def forward(self, x):
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(out + self.skip(x))


def cifar_style_net(depth, residual=True, widths=(8, 16, 32), in_channels=1, num_classes=10,
                    batch_norm=True, init="he", conv_bias=False):
    """A 6n+2-layer network; `init` is "he" (Kaiming normal, as in the paper) or "default" (PyTorch's own).

    The residual network is a sequence of ResidualUnits; its plain twin is the same layers laid out flat, in the
    same order, so that both draw the same initial weights from the same seed.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}")
    if init not in ("he", "default"):
        raise ValueError(f'init must be "he" or "default", got {init!r}')
    blocks_per_stage = (depth - 2) // 6
    layers = [conv3x3(in_channels, widths[0], bias=conv_bias), norm_layer(widths[0], batch_norm), nn.ReLU()]
    channels = widths[0]
    for stage, width in enumerate(widths):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            if residual:
                layers.append(ResidualUnit(channels, width, stride, batch_norm, conv_bias))
            else:
                layers += [conv3x3(channels, width, stride, conv_bias), norm_layer(width, batch_norm), nn.ReLU(),
                           conv3x3(width, width, 1, conv_bias), norm_layer(width, batch_norm), nn.ReLU()]
            channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    net = nn.Sequential(*layers)
    if init == "he":
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


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
