"""Correct answers written in other styles than the reference: each must keep full marks."""
from . import case
from .templates import PLAIN_FORWARD, RESIDUAL_FORWARD, plain_block, residual_block

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

# Answers that bind the block classes when their cell runs, so that the tests' swap of the notebook's names does
# not reach them; forward passes with checks that read the data (which the meta device cannot run by itself); and
# training loops and plots in other styles. Each must keep full marks.
NAN_CHECK = """
if torch.isnan(x).any():
    raise ValueError("the block's input holds NaN")
"""
FINITE_ASSERT = """
assert torch.isfinite(x).all(), "the block's input must be finite"
"""

CASES += [
    case("ok_bound_table_nan_check_dataloader", "a module-level table of block classes; ResidualBlock raises on "
         "NaN input; train with a seeded DataLoader; plot_loss_curves with pyplot's own calls",
         ResidualBlock=residual_block(forward=NAN_CHECK + RESIDUAL_FORWARD),
         build_network="""
        BLOCKS = {True: ResidualBlock, False: PlainBlock}  # bound now, when this cell runs


        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
            channels = widths[0]
            for stage, width in enumerate(widths):
                for index in range(blocks_per_stage):
                    layers.append(BLOCKS[residual](channels, width, 2 if stage and not index else 1))
                    channels = width
            return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        """,
         train="""
        from torch.utils.data import DataLoader, TensorDataset


        def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):
            device = next(model.parameters()).device
            loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed))
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            criterion = nn.CrossEntropyLoss()
            model.train()
            losses = []
            while len(losses) < steps:
                for x, y in loader:
                    loss = criterion(model(x.to(device)), y.to(device))
                    model.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss))
                    if len(losses) == steps:
                        break
            return losses
        """,
         plot_loss_curves="""
        def plot_loss_curves(histories):
            plt.figure(figsize=(6, 4))
            for label, losses in histories.items():
                plt.semilogy(losses, label=label)
            plt.xlabel("step")
            plt.ylabel("loss")
            plt.legend()
            return plt.gcf()
        """),
    case("ok_bound_default_argument_asserts", "the block classes as a default argument; PlainBlock asserts a finite "
         "input; train draws with replacement from the seeded global generator; a Figure made without pyplot, "
         "with a figure legend",
         PlainBlock=plain_block(forward=FINITE_ASSERT + PLAIN_FORWARD),
         build_network="""
        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64),
                          kinds=(PlainBlock, ResidualBlock)):
            kind = kinds[int(residual)]
            layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
            previous = widths[0]
            for stage, width in enumerate(widths):
                for index in range(blocks_per_stage):
                    layers.append(kind(previous, width, 2 if stage > 0 and index == 0 else 1))
                    previous = width
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, num_classes)]
            return nn.Sequential(*layers)
        """,
         train="""
        def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):
            torch.manual_seed(seed)
            device = next(model.parameters()).device
            images, labels = images.to(device), labels.to(device)  # new tensors: the caller's stay as they are
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            model.train()
            history = []
            for _ in range(steps):
                picked = torch.randint(len(images), (batch_size,)).to(device)
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images[picked]), labels[picked])
                loss.backward()
                optimizer.step()
                history.append(loss.item())
            return history
        """,
         plot_loss_curves="""
        from matplotlib.figure import Figure


        def plot_loss_curves(histories):
            figure = Figure(figsize=(6, 4))
            axes = figure.add_subplot()
            for label, losses in histories.items():
                axes.plot(losses, label=label)
            axes.set(yscale="log", xlabel="step", ylabel="cross-entropy")
            figure.legend()
            return figure
        """),
    case("ok_bound_partial_checked_shortcut", "stages built by functools.partial objects that hold the block "
         "classes; a projection that checks the size of its input's values; train with numpy's seeded generator "
         "and a NaN check on the loss; a log-log plot",
         make_shortcut="""
        class CheckedProjection(nn.Module):
            def __init__(self, in_channels, out_channels, stride):
                super().__init__()
                self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                self.bn = nn.BatchNorm2d(out_channels)

            def forward(self, x):
                if x.abs().max().item() > 1e6:
                    raise OverflowError("the shortcut's input has exploded")
                return self.bn(self.conv(x))


        def make_shortcut(in_channels, out_channels, stride=1):
            if in_channels == out_channels and stride == 1:
                return nn.Identity()
            return CheckedProjection(in_channels, out_channels, stride)
        """,
         build_network="""
        import functools


        def stage(block, in_channels, width, blocks, stride):
            return [block(in_channels if index == 0 else width, width, stride if index == 0 else 1)
                    for index in range(blocks)]


        STAGES = {True: functools.partial(stage, ResidualBlock), False: functools.partial(stage, PlainBlock)}


        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
            previous = widths[0]
            for number, width in enumerate(widths):
                layers += STAGES[residual](previous, width, blocks_per_stage, 2 if number else 1)
                previous = width
            return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, num_classes))
        """,
         train="""
        import math


        def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):
            rng = np.random.default_rng(seed)
            device = next(model.parameters()).device
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            model.train()
            losses = []
            for _ in range(steps):
                chosen = torch.as_tensor(rng.choice(len(images), size=min(batch_size, len(images)), replace=False))
                loss = F.cross_entropy(model(images[chosen].to(device)), labels[chosen].to(device))
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"the loss is {value}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(value)
            return losses
        """,
         plot_loss_curves="""
        def plot_loss_curves(histories):
            figure, axes = plt.subplots()
            for label, losses in histories.items():
                steps = np.arange(1, len(losses) + 1)
                axes.loglog(steps, np.asarray(losses), label=label)
            axes.set_xlabel("step (log scale)")
            axes.set_ylabel("training loss (log scale)")
            axes.legend(loc="upper right")
            return figure
        """),
    case("ok_bound_class_attribute_checked_network", "a network class holding the block classes as a class "
         "attribute, whose forward checks its input and its logits; train copies each loss to the CPU to record it "
         "and keeps its batch order in a list",
         train="""
        def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):
            device = next(model.parameters()).device
            generator = torch.Generator().manual_seed(seed)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            model.train()
            queue, losses = [], []
            while len(losses) < steps:
                if len(queue) < batch_size:
                    queue = torch.randperm(len(images), generator=generator).tolist()
                picked, queue = queue[:batch_size], queue[batch_size:]
                x, y = images[picked].to(device), labels[picked].to(device)
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.detach().to("cpu").item())
            return losses
        """,
         build_network="""
        class Network(nn.Module):
            KINDS = {True: ResidualBlock, False: PlainBlock}

            def __init__(self, blocks_per_stage, residual, in_channels, num_classes, widths):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                          nn.BatchNorm2d(widths[0]), nn.ReLU())
                blocks, previous = [], widths[0]
                for stage, width in enumerate(widths):
                    for index in range(blocks_per_stage):
                        blocks.append(self.KINDS[residual](previous, width, 2 if stage and index == 0 else 1))
                        previous = width
                self.blocks = nn.Sequential(*blocks)
                self.fc = nn.Linear(previous, num_classes)

            def forward(self, x):
                if torch.isnan(x).any():
                    raise ValueError("NaN in the input images")
                logits = self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))
                assert torch.isfinite(logits).all(), "the logits are not finite"
                return logits


        def build_network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)):
            return Network(blocks_per_stage, residual, in_channels, num_classes, widths)
        """),
]
