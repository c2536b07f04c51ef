"""Answer cells written like the reference, with one part swapped out: the wrong solutions are small edits of these."""
import textwrap

RESIDUAL_INIT = """
self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
self.bn1 = nn.BatchNorm2d(out_channels)
self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
self.bn2 = nn.BatchNorm2d(out_channels)
self.shortcut = make_shortcut(in_channels, out_channels, stride)
"""

RESIDUAL_FORWARD = """
out = F.relu(self.bn1(self.conv1(x)))
out = self.bn2(self.conv2(out))
return F.relu(out + self.shortcut(x))
"""

PLAIN_INIT = """
self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
self.bn1 = nn.BatchNorm2d(out_channels)
self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
self.bn2 = nn.BatchNorm2d(out_channels)
"""

PLAIN_FORWARD = """
out = F.relu(self.bn1(self.conv1(x)))
return F.relu(self.bn2(self.conv2(out)))
"""

# A skip that is not a shortcut: adds the input itself, and only when the shapes match (a PlainBlock with a secret
# skip connection, or a ResidualBlock that forgets make_shortcut).
ADDS_INPUT_WHEN_SHAPES_MATCH = """
out = F.relu(self.bn1(self.conv1(x)))
out = self.bn2(self.conv2(out))
if out.shape == x.shape:
    out = out + x
return F.relu(out)
"""


def _body(code):
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * 8)


def block_class(name, init, forward, before=""):
    return (textwrap.dedent(before).strip("\n") + "\n\n\n" if before else "") + (
        f"class {name}(nn.Module):\n"
        "    def __init__(self, in_channels, out_channels, stride=1):\n"
        "        super().__init__()\n"
        f"{_body(init)}\n\n"
        "    def forward(self, x):\n"
        f"{_body(forward)}\n")


def residual_block(init=RESIDUAL_INIT, forward=RESIDUAL_FORWARD, before=""):
    return block_class("ResidualBlock", init, forward, before)


def plain_block(init=PLAIN_INIT, forward=PLAIN_FORWARD, before=""):
    return block_class("PlainBlock", init, forward, before)


def make_shortcut(projection="nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), "
                             "nn.BatchNorm2d(out_channels)",
                  condition="in_channels == out_channels and stride == 1", identity="nn.Identity()"):
    return (f"def make_shortcut(in_channels, out_channels, stride=1):\n"
            f"    if {condition}:\n"
            f"        return {identity}\n"
            f"    return nn.Sequential({projection})\n")


def build_network(stem="nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False), "
                       "nn.BatchNorm2d(widths[0]), nn.ReLU()",
                  block="ResidualBlock if residual else PlainBlock",
                  stride="2 if stage > 0 and index == 0 else 1",
                  blocks="range(blocks_per_stage)",
                  stages="enumerate(widths)",
                  head="nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)",
                  signature="blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)"):
    return (f"def build_network({signature}):\n"
            f"    block = {block}\n"
            f"    layers = [{stem}]\n"
            f"    channels = widths[0]\n"
            f"    for stage, width in {stages}:\n"
            f"        for index in {blocks}:\n"
            f"            stride = {stride}\n"
            f"            layers.append(block(channels, width, stride))\n"
            f"            channels = width\n"
            f"    layers += [{head}]\n"
            f"    return nn.Sequential(*layers)\n")


TRAIN_SETUP = """
device = next(model.parameters()).device
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=lr)
generator = torch.Generator().manual_seed(seed)
order, cursor = torch.randperm(len(images), generator=generator), 0
losses = []
"""

TRAIN_STEP = """
if cursor + batch_size > len(order):
    order, cursor = torch.randperm(len(images), generator=generator), 0
batch = order[cursor:cursor + batch_size]
cursor += batch_size
loss = F.cross_entropy(model(images[batch].to(device)), labels[batch].to(device))
optimizer.zero_grad()
loss.backward()
optimizer.step()
losses.append(loss.item())
"""


def train(setup=TRAIN_SETUP, step=TRAIN_STEP, before=""):
    return (textwrap.dedent(before).strip("\n") + "\n\n\n" if before else "") + (
        "def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):\n"
        f"{textwrap.indent(textwrap.dedent(setup).strip(chr(10)), ' ' * 4)}\n"
        "    for _ in range(steps):\n"
        f"{textwrap.indent(textwrap.dedent(step).strip(chr(10)), ' ' * 8)}\n"
        "    return losses\n")


PLOT_BODY = """
figure, axes = plt.subplots()
for label, losses in histories.items():
    axes.plot(range(1, len(losses) + 1), losses, label=label)
axes.set_yscale("log")
axes.set_xlabel("step")
axes.set_ylabel("training loss")
axes.legend()
return figure
"""


def plot_loss_curves(body=PLOT_BODY):
    return f"def plot_loss_curves(histories):\n{textwrap.indent(textwrap.dedent(body).strip(chr(10)), ' ' * 4)}\n"
