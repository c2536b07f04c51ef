import numpy as np
import torch
from matplotlib.figure import Figure

from resnet_course.plots import plot_digits, plot_gradient_norms, plot_loss_curves


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
