"""Wrong residual blocks."""
from . import case
from .templates import ADDS_INPUT_WHEN_SHAPES_MATCH, RESIDUAL_FORWARD, RESIDUAL_INIT, residual_block

VISIBLE = "test_residual_block_visible"
LAYERS = "test_residual_block_layers"
ADDS = "test_residual_block_adds_shortcut"
FORMULA = "test_residual_block_formula"
INPUT = "test_residual_block_input_and_gradients"
DEVICES = "test_residual_block_devices"


def forward(code):
    return residual_block(forward=code)


def init(code):
    return residual_block(init=code)


CASES = [
    case("rb_no_shortcut", "never adds the shortcut", loses={VISIBLE, ADDS, FORMULA}, ResidualBlock=forward("""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))
        """)),
    case("rb_identity_shortcut_always", "the identity as shortcut even when the shape changes",
         loses={VISIBLE, LAYERS, ADDS, FORMULA}, ResidualBlock=init(RESIDUAL_INIT.replace(
             "make_shortcut(in_channels, out_channels, stride)", "nn.Identity()"))),
    case("rb_projection_always", "its own projection even when the shapes match",
         loses={VISIBLE, LAYERS}, ResidualBlock=init(RESIDUAL_INIT.replace(
             "make_shortcut(in_channels, out_channels, stride)",
             "nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), "
             "nn.BatchNorm2d(out_channels))"))),
    case("rb_multiplies", "multiplies the branch by the shortcut", loses={VISIBLE, ADDS, FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("out + self.shortcut(x)", "out * self.shortcut(x)"))),
    case("rb_no_final_relu", "no ReLU after the addition", loses={VISIBLE, ADDS, FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("return F.relu(out + self.shortcut(x))",
                                                        "return out + self.shortcut(x)"))),
    case("rb_relu_before_add", "ReLU(branch) + shortcut(x)", loses={VISIBLE, ADDS, FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("return F.relu(out + self.shortcut(x))",
                                                        "return F.relu(out) + self.shortcut(x)"))),
    case("rb_no_inner_relu", "no ReLU between the two conv-BN layers (passes the visible tests)", loses={FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("out = F.relu(self.bn1(self.conv1(x)))",
                                                        "out = self.bn1(self.conv1(x))"))),
    case("rb_relu_on_shortcut", "a ReLU on the shortcut before the addition (passes the visible tests)",
         loses={FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("out + self.shortcut(x)", "out + F.relu(self.shortcut(x))"))),
    case("rb_relu_on_input", "a ReLU on the input first (passes the visible tests)", loses={FORMULA},
         ResidualBlock=forward("x = F.relu(x)\n" + RESIDUAL_FORWARD)),
    case("rb_relu_before_bn", "conv -> ReLU -> BN instead of conv -> BN -> ReLU (passes the visible tests)",
         loses={FORMULA}, ResidualBlock=forward(RESIDUAL_FORWARD.replace(
             "out = F.relu(self.bn1(self.conv1(x)))", "out = self.bn1(F.relu(self.conv1(x)))"))),
    case("rb_detached_shortcut", "adds shortcut(x).detach(): no gradient through the skip (passes the visible "
         "tests)", loses={INPUT},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("self.shortcut(x)", "self.shortcut(x).detach()"))),
    case("rb_shortcut_no_grad", "computes the shortcut under torch.no_grad() (passes the visible tests)",
         loses={INPUT}, ResidualBlock=forward("""
        with torch.no_grad():
            skip = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + skip)
        """)),
    case("rb_stride_on_second_conv", "the stride on the second convolution (passes the visible tests)",
         loses={FORMULA}, ResidualBlock=init("""
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride)
        """)),
    case("rb_padding_zero", "3x3 convolutions without padding", loses={VISIBLE, LAYERS, FORMULA},
         ResidualBlock=init(RESIDUAL_INIT.replace("padding=1", "padding=0"))),
    case("rb_modifies_input", "s = shortcut(x); s += out changes x in place when the shortcut is the identity "
         "(passes the visible tests)", loses={INPUT}, ResidualBlock=forward("""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = self.shortcut(x)
        skip += out
        return F.relu(skip)
        """)),
    case("rb_inplace_relu_on_input", "ReLU(inplace=True) applied to the input", loses={FORMULA, INPUT},
         ResidualBlock=forward("x = F.relu(x, inplace=True)\n" + RESIDUAL_FORWARD)),
    case("rb_tensor_on_fixed_device", "scales by a tensor created on the CPU inside forward (passes on a CPU)",
         loses={DEVICES}, ResidualBlock=forward("""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) * torch.ones(out.shape[1], 1, 1)
        return F.relu(out + self.shortcut(x))
        """)),
    case("rb_calls_cpu", "moves its output to the CPU (passes on a CPU)", loses={DEVICES},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("return F.relu(out + self.shortcut(x))",
                                                        "return F.relu(out + self.shortcut(x)).cpu()"))),
    case("rb_zeros_on_cpu", "builds the sum in a torch.zeros(..., device='cpu') (passes on a CPU)",
         loses={DEVICES}, ResidualBlock=forward("""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        total = torch.zeros(out.shape, device="cpu")
        total = total + out + self.shortcut(x)
        return F.relu(total)
        """)),
    case("rb_checks_then_fixed_device", "checks its input for NaN (fine on any device), then builds the sum in a "
         "CPU tensor (passes on a CPU)", loses={DEVICES}, ResidualBlock=forward("""
        if torch.isnan(x).any():
            raise ValueError("NaN in the input")
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(torch.zeros(out.shape, device="cpu") + out + self.shortcut(x))
        """)),
    case("rb_missing_second_bn", "no BatchNorm after the second convolution (passes the visible tests)",
         loses={LAYERS, FORMULA}, ResidualBlock=residual_block(
             init=RESIDUAL_INIT.replace("self.bn2 = nn.BatchNorm2d(out_channels)\n", ""),
             forward=RESIDUAL_FORWARD.replace("out = self.bn2(self.conv2(out))", "out = self.conv2(out)"))),
    case("rb_shared_batchnorm", "one BatchNorm used twice (passes the visible tests)", loses={LAYERS, FORMULA},
         ResidualBlock=residual_block(
             init=RESIDUAL_INIT.replace("self.bn2 = nn.BatchNorm2d(out_channels)\n", ""),
             forward=RESIDUAL_FORWARD.replace("self.bn2(", "self.bn1("))),
    case("rb_conv_bias", "convolutions with a bias (passes the visible tests)", loses={LAYERS},
         ResidualBlock=init(RESIDUAL_INIT.replace("padding=1, bias=False", "padding=1"))),
    case("rb_shortcut_not_stored", "keeps its shortcut as self.skip, not self.shortcut (passes the visible tests)",
         loses={LAYERS, ADDS, FORMULA}, ResidualBlock=residual_block(
             init=RESIDUAL_INIT.replace("self.shortcut =", "self.skip ="),
             forward=RESIDUAL_FORWARD.replace("self.shortcut(x)", "self.skip(x)"))),
    case("rb_adds_input_not_shortcut", "adds x itself, not shortcut(x), when the shape is unchanged, and nothing "
         "otherwise (passes the visible tests)", loses={ADDS, FORMULA},
         ResidualBlock=forward(ADDS_INPUT_WHEN_SHAPES_MATCH)),
    case("rb_second_conv_from_input", "the second convolution sees conv1's output before BN and ReLU (passes the "
         "visible tests)", loses={FORMULA}, ResidualBlock=forward("""
        h = self.conv1(x)
        out = self.bn2(self.conv2(h))
        out = out + 0 * self.bn1(h)
        return F.relu(out + self.shortcut(x))
        """)),
    case("rb_drops_branch", "computes its branch, then multiplies it by 0 (passes the visible tests)",
         loses={ADDS, FORMULA, INPUT},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("out + self.shortcut(x)", "0 * out + self.shortcut(x)"))),
    case("rb_relu_on_each", "ReLU(branch) + ReLU(shortcut(x)): never negative, so it passes the visible tests",
         loses={ADDS, FORMULA},
         ResidualBlock=forward(RESIDUAL_FORWARD.replace("return F.relu(out + self.shortcut(x))",
                                                        "return F.relu(out) + F.relu(self.shortcut(x))"))),
]
