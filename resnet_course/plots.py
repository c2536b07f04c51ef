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
