import numpy as np
import torch
from matplotlib.figure import Figure

from resnet_course.plots import (plot_digits, plot_fit_and_held_out, plot_gradient_norms, plot_loss_curves,
                                 plot_per_block, plot_recipe_sweep, plot_signal_and_gradients, twin_styles)


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


def test_fit_and_held_out_side_by_side():
    histories = {"plain-8": [2.0, 1.0, 0.5, 0.4], "res-32": [2.0, 0.2, 0.05, 0.01]}
    accuracies = {"plain-8": {4: 0.9, 2: 0.8}, "res-32": {2: 0.9, 4: 0.92}}
    figure = plot_fit_and_held_out(histories, accuracies)
    fit, held = figure.axes
    assert fit.get_yscale() == "log" and held.get_yscale() == "linear"
    assert np.array_equal(fit.get_lines()[1].get_ydata(), histories["res-32"])
    plain = held.get_lines()[0]
    assert list(plain.get_xdata()) == [2, 4] and list(plain.get_ydata()) == [0.8, 0.9]  # in step order
    assert [t.get_text() for t in held.get_legend().get_texts()] == ["plain-8", "res-32"]


def test_recipe_sweep_groups_one_bar_per_run_and_recipe():
    finals = {"Adam 2e-3": {"plain-8": 0.1, "res-32": 0.004}, "SGD 0.1": {"plain-8": 0.006, "res-32": 0.005}}
    axes = plot_recipe_sweep(finals).axes[0]
    assert axes.get_yscale() == "log"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["Adam 2e-3", "SGD 0.1"]
    heights = {(container.get_label(), round(bar.get_x() + bar.get_width() / 2)): bar.get_height()
               for container in axes.containers for bar in container}
    assert heights == {("plain-8", 0): 0.1, ("plain-8", 1): 0.006, ("res-32", 0): 0.004, ("res-32", 1): 0.005}


def test_per_block_values_leave_gaps_and_draw_references():
    figure = plot_per_block({"plain-32": [0.1, None, 0.2], "res-32": [0.9, 0.95, 0.97]}, "accuracy", "lesions",
                            references={"chance": 0.1})
    axes = figure.axes[0]
    plain = axes.get_lines()[0]
    assert list(plain.get_xdata()) == [1, 2, 3] and np.isnan(plain.get_ydata()[1])
    assert any(list(line.get_ydata()) == [0.1, 0.1] for line in axes.get_lines()[2:])
    assert "chance" in [text.get_text() for text in axes.texts]
    assert plot_per_block({"a": [1, 10]}, "y", "t", log=True).axes[0].get_yscale() == "log"
