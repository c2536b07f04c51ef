"""Worked solutions of the lessons' "Your turn" exercises, as the code a learner would type.

`show_solution(name)` in exercises.py prints them; the tests run each one through its checker.
"""

SOLUTIONS = {
    "identity_conv": '''
def make_identity_conv(channels):
    """A 3x3 convolution (padding 1) whose output equals its input."""
    conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()                # every tap off...
        for c in range(channels):
            conv.weight[c, c, 1, 1] = 1.0  # ...except the centre tap from channel c to itself
    return conv

# torch.nn.init.dirac_(conv.weight) does the same in one call.
''',
    "residual_chain": '''
def residual_chain(x, w, depth):
    for _ in range(depth):
        x = x + w * x      # the skip carries x; the "layer" adds w * x on top
    return x

# d out / d x = (1 + w) ** depth, which contains the term 1 from the skips alone.
''',
    "same_padding": '''
padding_5x5 = 2   # (32 + 2*2 - 5) // 1 + 1 = 32: a k x k kernel needs (k - 1) / 2 pixels on each side
''',
    "pad_shortcut": '''
def pad_shortcut(x, out_channels, stride):
    """The paper's option A: keep every stride-th pixel, then append zero channels."""
    x = x[:, :, ::stride, ::stride]
    missing = out_channels - x.shape[1]
    # F.pad's tuple runs from the last dimension backwards: (W left, W right, H top, H bottom, C front, C back)
    return F.pad(x, (0, 0, 0, 0, 0, missing))
''',
    "ranking": '''
ranking = sorted(histories, key=lambda label: final_loss(histories[label]))
''',
    "loss_plot": '''
figure, axes = plt.subplots(figsize=(7, 4))
for label, losses in histories.items():
    axes.plot(range(1, len(losses) + 1), losses, label=label)   # x: the step, y: that step's loss
axes.set_yscale("log")
axes.set_xlabel("step")
axes.set_ylabel("training loss (log scale)")
axes.legend()

# plt.semilogy(losses, label=label) draws on a log-scaled axis in one call, on pyplot's current figure.
''',
    "projection_params": '''
projection_params = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)   # 1x1 conv weights + BatchNorm weight and bias
# = 576 + 2176 = 2752, and 269,722 + 2,752 = 272,474
''',
    "prediction": '''
# At every recipe of the sweep the deeper PLAIN network ended higher: plain-32 goes last.
# Whether the deeper RESIDUAL network ends lowest depends on the recipe: it did at Adam 2e-3, but at Adam 1e-2
# and SGD 0.1 res-8 got as low or lower within 100 steps. For a gentler rate, such as Adam 1e-3:
prediction = ["res-32", "res-8", "plain-8", "plain-32"]
''',
    "preact_block": '''
class PreActBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        branch = self.conv1(torch.relu(self.norm1(x)))      # normalise and activate BEFORE each convolution
        branch = self.conv2(torch.relu(self.norm2(branch)))
        return x + branch                                   # and nothing after the addition
''',
    "response_ratio": '''
def response_ratio(block, x):
    branch = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))   # F(x), as in lesson 3
    return (branch.norm() / x.norm()).item()

# block.branch(x) computes the same F(x).
''',
}
