"""Figures for the lessons. Each function returns a matplotlib Figure, which Jupyter displays once."""
import io

from matplotlib.figure import Figure as _Figure
from matplotlib.ticker import MaxNLocator


class Figure(_Figure):
    """A Figure that renders itself as PNG in any Jupyter front end, with or without `%matplotlib inline`.

    Being made without pyplot, it is never shown a second time by pyplot's own display at the end of a cell.
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def plot_loss_curves(histories, title="Training loss", styles=None):
    """Several runs' loss histories ({label: losses}) on one log-scale axis.

    `styles` ({label: keyword arguments of Axes.plot}) sets a run's colour or line style, e.g. from twin_styles.
    """
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, losses in histories.items():
        axes.plot(range(1, len(losses) + 1), losses, label=label, **(styles or {}).get(label, {}))
    axes.set(yscale="log", xlabel="step", ylabel="loss (log scale)", title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    return figure


def twin_styles(runs):
    """Line styles that pair plain and residual twins: one colour per depth, plain dashed, residual solid.

    `runs` holds (label, depth, residual) triples; the result is the `styles` of plot_loss_curves.
    """
    depths = sorted({depth for _, depth, _ in runs})
    return {label: {"color": f"C{depths.index(depth)}", "linestyle": "-" if residual else "--"}
            for label, depth, residual in runs}


def plot_gradient_norms(norms, title="Gradient norm per layer"):
    """Per-layer gradient norms ({label: {layer: norm}} or {label: [norms]}), input side on the left, log scale."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    _draw_per_layer(axes, norms, "layer (1 = next to the input)", "gradient norm (log scale)")
    axes.set_title(title)
    return figure


def plot_signal_and_gradients(spreads, norms, title="Forward and backward, at initialisation"):
    """Side by side: how much each block's output varies across images (activation_spread) and the gradient norm
    of every layer (gradient_norms), for several networks ({label: values} each)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    forward, backward = figure.subplots(1, 2)
    _draw_per_layer(forward, spreads, "block (0 = stem, last = logits)", "spread across images (log scale)", first=0)
    forward.set_title("Forward: how much the output depends on the image")
    _draw_per_layer(backward, norms, "layer (1 = next to the input)", "gradient norm (log scale)")
    backward.set_title("Backward: the gradient each layer gets")
    figure.suptitle(title)
    return figure


def _draw_per_layer(axes, series, xlabel, ylabel, first=1):
    """One line per network of per-layer values ({label: {name: value}} or {label: [values]}), log scale."""
    for label, values in series.items():
        values = list(values.values()) if hasattr(values, "values") else list(values)
        axes.plot(range(first, first + len(values)), values, marker="o", markersize=3, label=label)
    axes.set(yscale="log", xlabel=xlabel, ylabel=ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are counted: no tick at layer 2.5
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)


def plot_digits(images, labels, count=8):
    """The first `count` images (N, 1, H, W) in a row, each titled with its label."""
    figure = Figure(figsize=(count, 1.3), layout="constrained")
    for axes, image, label in zip(figure.subplots(1, count), images[:count].cpu().numpy(), labels[:count].tolist()):
        axes.imshow(image[0], cmap="gray_r")
        axes.set_title(label)
        axes.axis("off")
    return figure


def plot_fit_and_held_out(histories, accuracies, title="Fitting against generalising"):
    """Two panels side by side: each run's training loss per step (log scale), and its held-out accuracy
    ({label: {step: accuracy}}) at the steps where it was measured."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    fit, held = figure.subplots(1, 2)
    for label, losses in histories.items():
        fit.plot(range(1, len(losses) + 1), losses, label=label)
        steps = sorted(accuracies[label])
        held.plot(steps, [accuracies[label][step] for step in steps], marker="o", markersize=3, label=label)
    fit.set(yscale="log", xlabel="step", ylabel="training loss (log scale)", title="on the training images")
    held.set(xlabel="step", ylabel="accuracy", title="on the held-out images")
    for axes in (fit, held):
        axes.legend()
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    return figure


def plot_recipe_sweep(finals, title="Final training loss for each recipe"):
    """Grouped bars, log scale: {recipe label: {run label: final loss}}, one group per recipe."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.add_subplot()
    recipes = list(finals)
    runs = list(finals[recipes[0]])
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        positions = [group + (index - (len(runs) - 1) / 2) * width for group in range(len(recipes))]
        axes.bar(positions, [finals[recipe][run] for recipe in recipes], width, label=run)
    axes.set_xticks(range(len(recipes)), recipes)
    axes.set(yscale="log", ylabel="final training loss (log scale)", title=title)
    axes.legend(loc="upper left", bbox_to_anchor=(1, 1))
    axes.grid(True, axis="y", which="both", alpha=0.3)
    return figure


def plot_per_block(series, ylabel, title, log=False, references=None):
    """One value per block ({label: [value or None]}), block 1 next to the input; None leaves a gap.
    `references` ({label: value}) draws dashed horizontal lines, e.g. the intact network's accuracy."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, values in series.items():
        values = [float("nan") if value is None else value for value in values]
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=4, label=label)
    for label, value in (references or {}).items():
        axes.axhline(value, linestyle="--", linewidth=1, color="grey")
        axes.annotate(label, (1, value), xycoords=("axes fraction", "data"), textcoords="offset points",
                      xytext=(-4, 3), ha="right", fontsize=8, color="grey")
    axes.set(xlabel="block (1 = next to the input)", ylabel=ylabel, title=title, yscale="log" if log else "linear")
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    return figure
