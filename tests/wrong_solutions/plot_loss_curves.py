"""Wrong loss plots."""
from . import case
from .templates import PLOT_BODY, plot_loss_curves

VISIBLE = "test_plot_loss_curves_visible"
LINES = "test_plot_loss_curves_lines"
AXES = "test_plot_loss_curves_axes"


def body(old, new):
    assert old in PLOT_BODY, old
    return plot_loss_curves(PLOT_BODY.replace(old, new))


CASES = [
    case("pl_linear_scale", "a linear loss axis (passes the visible tests)", loses={AXES},
         plot_loss_curves=body('axes.set_yscale("log")\n', "")),
    case("pl_no_legend", "no legend (passes the visible tests)", loses={AXES},
         plot_loss_curves=body("axes.legend()\n", "")),
    case("pl_no_axis_labels", "no axis labels (passes the visible tests)", loses={AXES},
         plot_loss_curves=body('axes.set_xlabel("step")\naxes.set_ylabel("training loss")\n', "")),
    case("pl_unlabelled_lines", "lines without labels, names given to the legend instead", loses={VISIBLE, LINES},
         plot_loss_curves=body("axes.plot(range(1, len(losses) + 1), losses, label=label)",
                               "axes.plot(range(1, len(losses) + 1), losses)").replace(
             "axes.legend()", "axes.legend(list(histories))")),
    case("pl_reuses_the_current_figure", "draws on pyplot's current figure, which the next call draws on again",
         loses={LINES},
         plot_loss_curves=body("figure, axes = plt.subplots()", "figure, axes = plt.gcf(), plt.gca()")),
    case("pl_one_axis_per_run", "one subplot per run (passes the visible tests)", loses={LINES, AXES},
         plot_loss_curves="""
        def plot_loss_curves(histories):
            figure, grid = plt.subplots(1, len(histories), squeeze=False)
            for axes, (label, losses) in zip(grid[0], histories.items()):
                axes.semilogy(losses, label=label)
                axes.set_xlabel("step")
                axes.set_ylabel("training loss")
                axes.legend()
            return figure
        """),
    case("pl_log_of_the_losses", "plots log(loss) on a linear axis (passes the visible tests)", loses={LINES, AXES},
         plot_loss_curves=body("range(1, len(losses) + 1), losses,", "range(1, len(losses) + 1), np.log(losses),")
         .replace('axes.set_yscale("log")\n', "")),
    case("pl_axes_swapped", "the steps on the y-axis and the losses on the x-axis (passes the visible tests)",
         loses={LINES}, plot_loss_curves=body("axes.plot(range(1, len(losses) + 1), losses, label=label)",
                                              "axes.plot(losses, range(1, len(losses) + 1), label=label)")),
    case("pl_returns_axes", "returns the Axes, not the Figure", loses={VISIBLE, LINES, AXES},
         plot_loss_curves=body("return figure", "return axes")),
    case("pl_returns_nothing", "shows the figure and returns nothing", loses={VISIBLE, LINES, AXES},
         plot_loss_curves=body("return figure", "plt.show()")),
    case("pl_wraps_course_package", "calls the course's own resnet_course.plot_loss_curves (passes the visible "
         "tests)", loses={LINES, AXES}, plot_loss_curves="""
        import resnet_course


        def plot_loss_curves(histories):
            return resnet_course.plot_loss_curves(histories)
        """),
]
