import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from pilcro_lib.plotting import ladder_curves


def test_ladder_curves_draw_each_runs_validation_accuracy_by_epoch():
    histories = {2: [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}],
                 4: [{"epoch": e, "val_acc": 0.1 * e} for e in range(1, 5)]}
    fig = ladder_curves(histories)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["2 epochs", "4 epochs"]
    assert lines[0].get_xdata().tolist() == [1, 2] and lines[0].get_ydata().tolist() == [0.5, 0.7]
    assert lines[1].get_ydata().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "validation accuracy")
    plt.close(fig)


def test_ladder_curves_refuse_an_empty_ladder():
    with pytest.raises(ValueError, match="histories must be a non-empty mapping"):
        ladder_curves({})
