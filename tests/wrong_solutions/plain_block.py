"""Wrong plain blocks."""
from . import case
from .templates import ADDS_INPUT_WHEN_SHAPES_MATCH, PLAIN_FORWARD, PLAIN_INIT, plain_block

VISIBLE = "test_plain_block_visible"
NO_SHORTCUT = "test_plain_block_no_shortcut"
FORMULA = "test_plain_block_formula"


def forward(code):
    return plain_block(forward=code)


CASES = [
    case("pb_secret_skip", "adds its input whenever the shapes match (passes the visible tests)",
         loses={NO_SHORTCUT, FORMULA}, PlainBlock=forward(ADDS_INPUT_WHEN_SHAPES_MATCH)),
    case("pb_with_projection", "a residual block under another name: adds make_shortcut(...) (passes the visible "
         "tests)", loses={NO_SHORTCUT, FORMULA}, PlainBlock=plain_block(
             init=PLAIN_INIT + "self.shortcut = make_shortcut(in_channels, out_channels, stride)\n",
             forward="""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))
        """)),
    case("pb_zeros", "computes its branch, then returns zeros of its shape (passes the visible tests)",
         loses={NO_SHORTCUT, FORMULA}, PlainBlock=forward(PLAIN_FORWARD.replace(
             "return F.relu(self.bn2(self.conv2(out)))", "return torch.zeros_like(F.relu(self.bn2(self.conv2(out))))"))),
    case("pb_no_final_relu", "no ReLU at the end (passes the visible tests)", loses={FORMULA},
         PlainBlock=forward(PLAIN_FORWARD.replace("return F.relu(self.bn2(self.conv2(out)))",
                                                  "return self.bn2(self.conv2(out))"))),
    case("pb_no_inner_relu", "no ReLU between the two conv-BN layers (passes the visible tests)", loses={FORMULA},
         PlainBlock=forward(PLAIN_FORWARD.replace("out = F.relu(self.bn1(self.conv1(x)))",
                                                  "out = self.bn1(self.conv1(x))"))),
    case("pb_stride_on_second_conv", "the stride on the second convolution (passes the visible tests)",
         loses={FORMULA}, PlainBlock=plain_block(init="""
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        """)),
    case("pb_padding_zero", "3x3 convolutions without padding", loses={VISIBLE, NO_SHORTCUT, FORMULA},
         PlainBlock=plain_block(init=PLAIN_INIT.replace("padding=1", "padding=0"))),
    case("pb_missing_first_bn", "no BatchNorm after the first convolution (passes the visible tests)",
         loses={NO_SHORTCUT, FORMULA}, PlainBlock=plain_block(
             init=PLAIN_INIT.replace("self.bn1 = nn.BatchNorm2d(out_channels)\n", ""),
             forward=PLAIN_FORWARD.replace("F.relu(self.bn1(self.conv1(x)))", "F.relu(self.conv1(x))"))),
    case("pb_calls_cpu", "moves its output to the CPU (passes on a CPU)", loses={FORMULA},
         PlainBlock=forward(PLAIN_FORWARD.replace("return F.relu(self.bn2(self.conv2(out)))",
                                                  "return F.relu(self.bn2(self.conv2(out))).to('cpu')"))),
    case("pb_modifies_input", "applies ReLU(inplace=True) to its input first", loses={FORMULA},
         PlainBlock=forward("x = F.relu_(x)\n" + PLAIN_FORWARD)),
]
