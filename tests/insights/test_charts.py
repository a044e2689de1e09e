"""One layout for every figure: the assumption pages' defaults, the Customers page's own on top,
then the figure's; and the P(alive) histogram on a 0–100 axis (how both look on a phone is
checked in the browser, tests/browser/test_legible.py)."""

from __future__ import annotations

from insights.charts import FONT, layout
from insights.charts_customers import PAGE_LAYOUT, p_alive_figure


def test_a_figure_s_keys_win_over_its_page_s_which_win_over_the_base():
    base = layout()
    assert base["margin"] == {"l": 60, "r": 20, "t": 20, "b": 50}
    assert base["legend"] == {"orientation": "h", "y": -0.2}
    assert "height" not in base and "hoverlabel" not in base

    page = layout(PAGE_LAYOUT, height=240, showlegend=False)
    assert page["margin"] == {"l": 56, "r": 16, "t": 16, "b": 48}
    assert page["legend"] == {"orientation": "h", "y": -0.22, "x": 0}
    assert page["hoverlabel"] == {"font": FONT}
    assert (page["height"], page["showlegend"], page["font"]) == (240, False, FONT)
    assert layout(PAGE_LAYOUT)["height"] == 320
    # The page's defaults are not changed by a figure's.
    assert PAGE_LAYOUT["height"] == 320 and "showlegend" not in PAGE_LAYOUT


def test_axes_make_room_for_their_labels_unless_a_figure_says_otherwise():
    figure = layout(xaxis={"type": "date"}, yaxis={"automargin": False})
    assert figure["xaxis"] == {"automargin": True, "type": "date"}
    assert figure["yaxis"] == {"automargin": False}


def test_p_alive_draws_each_tenth_as_a_bar_on_a_0_to_100_axis():
    histogram = [
        {"low": i / 10, "high": (i + 1) / 10, "customers": customers}
        for i, customers in enumerate([226, 387, 360, 413, 361, 399, 416, 373, 138, 2713])
    ]
    bars = p_alive_figure(histogram)["data"][0]
    assert bars["x"] == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert bars["width"] == [9] * 10
    assert bars["customdata"][0] == "0–10" and bars["customdata"][-1] == "90–100"
    assert bars["y"][-1] == 2713
    xaxis = p_alive_figure(histogram)["layout"]["xaxis"]
    assert (xaxis["range"], xaxis["dtick"]) == ([0, 100], 20)
