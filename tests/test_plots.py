import numpy as np
import torch
from matplotlib.figure import Figure

from resnet_course.plots import (plot_digits, plot_gradient_norms, plot_loss_curves, plot_signal_and_gradients,
                                 twin_styles)


def integer_ticks(axis):
    ticks = axis.get_major_locator().tick_values(*axis.get_view_interval())
    return all(float(t).is_integer() for t in ticks)


def test_loss_curves_share_one_log_axis():
    histories = {"plain-8": [2.0, 1.0, 0.5], "res-8": [2.0, 0.5, 0.1, 0.05]}
    figure = plot_loss_curves(histories)
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    lines = axes.get_lines()
    assert [line.get_label() for line in lines] == ["plain-8", "res-8"]
    assert np.array_equal(lines[1].get_ydata(), histories["res-8"])
    assert np.array_equal(lines[1].get_xdata(), [1, 2, 3, 4])
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["plain-8", "res-8"]


def test_gradient_norms_accept_dicts_and_lists():
    figure = plot_gradient_norms({"plain": {"a": 1e-8, "b": 1e-3}, "residual": [0.5, 0.7]})
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    plain, residual = axes.get_lines()
    assert plain.get_label() == "plain" and list(plain.get_ydata()) == [1e-8, 1e-3]
    assert list(residual.get_xdata()) == [1, 2]
    assert integer_ticks(axes.xaxis), "layer numbers are whole numbers"


def test_twins_share_a_colour_and_plain_is_dashed():
    runs = [("plain-8", 8, False), ("plain-32", 32, False), ("res-8", 8, True), ("res-32", 32, True)]
    styles = twin_styles(runs)
    figure = plot_loss_curves({label: [2.0, 1.0] for label, _, _ in runs}, styles=styles)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert lines["plain-8"].get_color() == lines["res-8"].get_color() != lines["plain-32"].get_color()
    assert lines["plain-32"].get_color() == lines["res-32"].get_color()
    assert {lines[k].get_linestyle() for k in ("plain-8", "plain-32")} == {"--"}
    assert {lines[k].get_linestyle() for k in ("res-8", "res-32")} == {"-"}


def test_signal_and_gradients_side_by_side():
    spreads = {"plain": {"stem": 0.3, "block 1": 1e-3, "logits": 1e-9}, "residual": [0.3, 0.2, 0.05]}
    norms = {"plain": [1e-9, 1e-5, 1e-2, 0.5], "residual": [0.1, 0.2, 0.2, 0.5]}
    forward, backward = plot_signal_and_gradients(spreads, norms).axes
    assert list(forward.get_lines()[0].get_xdata()) == [0, 1, 2], "block 0 is the stem"
    assert list(forward.get_lines()[0].get_ydata()) == [0.3, 1e-3, 1e-9]
    assert list(backward.get_lines()[1].get_ydata()) == norms["residual"]
    for axes in (forward, backward):
        assert axes.get_yscale() == "log" and integer_ticks(axes.xaxis)
        assert [t.get_text() for t in axes.get_legend().get_texts()] == ["plain", "residual"]


def test_figure_renders_to_png(tmp_path):
    path = tmp_path / "loss.png"
    plot_loss_curves({"run": [1.0, 0.1]}).savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_displays_itself_as_png_without_pyplot():
    png = plot_loss_curves({"run": [1.0, 0.1]})._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_row_shows_each_image_with_its_label():
    images = torch.arange(10 * 4, dtype=torch.float32).view(10, 1, 2, 2)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    figure = plot_digits(images, labels, count=4)
    assert len(figure.axes) == 4
    assert [axes.get_title() for axes in figure.axes] == ["3", "1", "4", "1"]
    assert np.array_equal(figure.axes[2].get_images()[0].get_array(), images[2, 0].numpy())
    assert not figure.axes[0].axison
