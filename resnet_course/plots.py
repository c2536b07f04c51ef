"""Figures for the lessons. Each function returns a matplotlib Figure, which Jupyter displays once."""
import io

from matplotlib.figure import Figure as _Figure


class Figure(_Figure):
    """A Figure that renders itself as PNG in any Jupyter front end, with or without `%matplotlib inline`.

    Being made without pyplot, it is never shown a second time by pyplot's own display at the end of a cell.
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def plot_loss_curves(histories, title="Training loss"):
    """Several runs' loss histories ({label: losses}) on one log-scale axis."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, losses in histories.items():
        axes.plot(range(1, len(losses) + 1), losses, label=label)
    axes.set(yscale="log", xlabel="step", ylabel="loss (log scale)", title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    return figure


def plot_gradient_norms(norms, title="Gradient norm per layer"):
    """Per-layer gradient norms ({label: {layer: norm}} or {label: [norms]}), input side on the left, log scale."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, values in norms.items():
        values = list(values.values()) if hasattr(values, "values") else list(values)
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    axes.set(yscale="log", xlabel="layer (1 = next to the input)", ylabel="gradient norm (log scale)", title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    return figure


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
