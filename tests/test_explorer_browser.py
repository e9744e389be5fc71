"""The landscape explorer page (``book/landscape_explorer.md``) against ``pilcro_lib.paths``.

The page computes path counts in its own JavaScript. Here headless Chromium (the set-up of
``test_browser.py``, whose server and browser fixtures this file uses) sets the page's controls
as a reader would, by selecting, clicking and typing, for each of :data:`SETTINGS`, reads the
map the page computed (``window.landscapeExplorer.current()``) and compares it, exactly, with
:func:`pilcro_lib.paths.path_count` of the equivalent ``torch.nn.Sequential``; cv and border
ratio must agree with :mod:`pilcro_lib.landscape` to 1e-12. Settings the library refuses must
show a message that names the setting instead of a map.

The page relies on the map being separable for square kernels (``N(i, j) = n(i) * n(j)``, with
one 1-D profile per axis); :func:`test_the_path_count_is_separable` checks that property on the
library alone, over every padding, stride, dilation and pooling the page offers. Needs the built
book (``PILCRO_BOOK_HTML`` points at another one) and Debian's chromium and chromium-driver,
as ``test_browser.py`` does.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_browser import HTML, SCREENSHOTS, browser, server  # noqa: F401 - pytest fixtures
from torch import nn

from pilcro_lib.landscape import FLATNESS_FIGURES, border_ratio, cv, flatness, normalize
from pilcro_lib.paths import path_count

PAGE = "book/landscape_explorer.html"
WIDTH = 1280  # a laptop's browser window: the text column is about 676 px
FIELDS = ("padding", "kernel", "stride", "dilation", "depth", "pool", "poolSize", "poolStride")
FIELDS += ("rounding", "height", "width")
POOL_FIELDS = ("poolSize", "poolStride", "rounding")  # disabled, and not read, without pooling


def _fields(s: dict) -> list[str]:
    """The controls that hold setting ``s``."""
    return [f for f in FIELDS if s["pool"] != "none" or f not in POOL_FIELDS]


def _settings(table: str) -> list[dict]:
    """Rows of ``padding kernel stride dilation conv-layers height width [pooling size stride
    rounding]``, then an optional note, as the page's settings."""
    rows = []
    for line in table.strip().splitlines():
        words = line.split()
        row = dict(zip(("padding", "kernel", "stride", "dilation", "depth"), words[:5]))
        row.update(height=words[5], width=words[6], pool="none", poolSize=2, poolStride=2)
        row["rounding"] = "floor"
        if len(words) > 7 and words[7] in ("max", "avg"):
            row.update(zip(("pool", "poolSize", "poolStride", "rounding"), words[7:11]))
        rows.append(
            {k: v if k in ("padding", "pool", "rounding") else int(v) for k, v in row.items()}
        )
    return rows


def _id(s: dict) -> str:
    pool = "" if s["pool"] == "none" else f"-{s['pool']}{s['poolSize']}/{s['poolStride']}"
    pool += "" if s["pool"] == "none" else f"-{s['rounding']}"
    return (
        f"{s['padding']}-k{s['kernel']}-s{s['stride']}-d{s['dilation']}-x{s['depth']}"
        f"-{s['height']}x{s['width']}{pool}"
    )


SETTINGS = _settings("""
zeros     3 1 1  4  32  32
valid     3 1 1  3  16  16
full      3 1 1  3  12  12
reflect   3 1 1  3  12  12
replicate 3 1 1  3  12  12
circular  3 1 1  3  12  12   a flat map
zeros     3 2 1  1  16  16   stride 2 on an even size: the 4:2:2:1 checkerboard
zeros     3 2 1  1  17  17   stride 2 on an odd size
zeros     3 2 1  2  16  15
valid     3 2 1  2  15  16
reflect   3 2 1  2  16  17
replicate 5 2 1  2  17  16
circular  3 2 1  2  16  16
full      3 2 1  2  11  10
zeros     3 1 2  3  20  20   dilation
valid     3 1 2  2  18  18
reflect   3 1 2  2  14  14
replicate 3 1 3  2  14  13
circular  3 1 2  3  13  13
full      3 1 2  2   9   9
zeros     1 2 1  2  16  16   a 1x1 stride-2 conv: three pixels in four are blind
zeros     2 3 1  1  14  14   an even kernel and a stride above it: blind spots
zeros     3 2 2  2  17  17
zeros     3 1 1  2  15  15   max 2 2 floor   floor mode drops the last row
zeros     3 1 1  2  15  15   max 2 2 ceil
zeros     3 1 1  2  16  16   avg 3 2 ceil
valid     3 1 1  2  17  16   avg 3 2 floor
reflect   3 1 1  2  13  14   max 3 2 ceil
circular  3 1 1  2  11  11   avg 2 2 ceil
replicate 4 2 1  2  16  16   max 2 1 floor
full      5 1 1  2  10  10   max 3 3 ceil
zeros     7 1 1  3  24  24
zeros     3 1 1 10  40  40
zeros     3 4 1  2  33  31   avg 2 2 ceil
valid     2 2 3  2  30  29   max 2 3 ceil    a pooling stride above its size
zeros     3 1 1  1   1   1   one pixel: no border ring
reflect  11 1 1  1   6   6   a pad of 5 on 6 pixels: taps reflected twice over
circular  9 1 4  1  20  20   a pad of 16 wrapped around 20 pixels
zeros     3 2 1  3   9   9   max 2 2 ceil
zeros     2 1 4  1   2   2   every tap lands in the padding: no pixel is read
zeros     5 1 1  6 128 128   the largest input
""")
DEFAULTS = SETTINGS[0]
# Settings the library refuses (and one valid after them): the control the message must name and
# words it must hold
REFUSED = list(
    zip(
        _settings("""
valid     3 1 1 10  16  16
reflect   3 1 1  1   1   8
zeros     3 1 1  2   5   5   max 3 3 floor
zeros     3 1 1  1  16   3
zeros     3 1 1  3  16   2   avg 2 2 floor
"""),
        ("height", "height", "height", None, "width"),
        (
            "Input height 16 is too small",
            "reflect padding",
            "pooling size 3",
            None,
            "Input width 2",
        ),
    )
)


def equivalent_net(s: dict, axis: int | None = None) -> nn.Sequential:
    """The page's network as PyTorch modules: ``depth`` x [conv, pooling?], global average pooling,
    a linear readout. ``axis`` 0 or 1: the same network acting along that axis only (kernel,
    stride, dilation and pooling 1 and no padding along the other)."""

    def along(v: int, other: int = 1) -> int | tuple[int, int]:
        return v if axis is None else (v, other) if axis == 0 else (other, v)

    span = s["dilation"] * (s["kernel"] - 1)
    padding = {"valid": 0, "full": span}.get(s["padding"], span // 2)
    mode = s["padding"] if s["padding"] in ("reflect", "replicate", "circular") else "zeros"
    pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(s["pool"])
    layers: list[nn.Module] = []
    for _ in range(s["depth"]):
        layers.append(
            nn.Conv2d(
                1,
                1,
                along(s["kernel"]),
                stride=along(s["stride"]),
                padding=along(padding, 0),
                dilation=along(s["dilation"]),
                bias=False,
                padding_mode=mode,
            )
        )
        if pool is not None:
            ceil = s["rounding"] == "ceil"
            layers.append(pool(along(s["poolSize"]), along(s["poolStride"]), ceil_mode=ceil))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1))


def library_map(s: dict) -> torch.Tensor:
    model = equivalent_net(s)
    with torch.no_grad():  # PyTorch itself accepts the network at this size
        model(torch.zeros(1, 1, s["height"], s["width"]))
    return path_count(model, (1, s["height"], s["width"]))


def library_figures(n: torch.Tensor) -> tuple[float | None, float | None]:
    """cv and border ratio as pilcro_lib.landscape computes them (None where undefined)."""
    if not n.any():
        return None, None
    if min(n.shape) > 4:
        figures = flatness(n)
        assert set(FLATNESS_FIGURES) <= set(figures)
        return figures["cv"], figures["border_ratio"]
    lam = normalize(n)
    with pytest.raises(ValueError):
        border_ratio(lam)
    return cv(lam).item(), None


# --- separability, on the library alone --------------------------------------------------------


SEPARABLE_GRID = [
    dict(
        DEFAULTS, padding=padding, kernel=k, stride=stride, dilation=d, depth=2, height=13, width=14
    )
    | dict(zip(("pool", "poolSize", "poolStride", "rounding"), pool))
    for padding, k, stride, d, pool in itertools.product(
        ("zeros", "reflect", "replicate", "circular", "valid", "full"),
        (2, 3),
        (1, 2, 3),
        (1, 2),
        (("none",), ("max", 2, 2, "floor"), ("avg", 3, 2, "ceil"), ("max", 2, 3, "ceil")),
    )
]


def test_the_path_count_is_separable():
    """For every setting the page offers, the library's 2-D map is the outer product of the
    library's 1-D maps of the same network acting along the rows and along the columns."""
    checked = 0
    for s in SEPARABLE_GRID:
        h, w = s["height"], s["width"]
        try:
            full = path_count(equivalent_net(s), (1, h, w))
        except ValueError:  # too small: then one axis alone is too small too
            with pytest.raises(ValueError):
                path_count(equivalent_net(s, 0), (1, h, 1))
                path_count(equivalent_net(s, 1), (1, 1, w))
            continue
        rows = path_count(equivalent_net(s, 0), (1, h, 1))[:, 0]
        cols = path_count(equivalent_net(s, 1), (1, 1, w))[0, :]
        assert torch.equal(full, torch.outer(rows, cols)), s
        checked += 1
    assert checked >= 200, checked


# --- the page -------------------------------------------------------------------------------------

READ = """
const done = arguments[arguments.length - 1];
window.landscapeExplorer.rendered().then(() => {
  const c = window.landscapeExplorer.current();
  const box = (selector) => {
    const e = document.querySelector(selector);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return {width: r.width, height: r.height};
  };
  done({
    raw: c.raw, error: c.error, map: c.map, exact: c.exact, cv: c.cv,
    borderRatio: c.borderRatio, blind: c.blindSpots ? c.blindSpots.length : null,
    message: document.getElementById('lx-message').textContent,
    messageShown: !document.getElementById('lx-message').hidden,
    outputShown: !document.getElementById('lx-output').hidden,
    invalid: Array.from(document.querySelectorAll('[aria-invalid="true"]')).map(e => e.name),
    mapSvg: box('#lx-map svg.main-svg'), mapImage: box('#lx-map .hm image'),
    profileSvg: box('#lx-profile svg.main-svg'),
    blindText: document.getElementById('lx-blind').textContent,
  });
}, error => done({failed: String(error)}));
"""


def _set(driver, s: dict) -> None:
    """Set the controls to ``s`` as a reader would: the pooling radio first (it enables the
    pooling fields), then selects and typed numbers, only where they differ."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    form = driver.find_element(By.ID, "lx-form")
    radio = form.find_element(By.CSS_SELECTOR, f'input[name="pool"][value="{s["pool"]}"]')
    if not radio.is_selected():
        radio.click()
    for name in _fields(s):
        if name == "pool":
            continue
        element = form.find_element(By.NAME, name)
        if element.tag_name == "select":
            if element.get_attribute("value") != s[name]:
                Select(element).select_by_value(s[name])
        elif element.get_attribute("value") != str(s[name]):
            element.click()
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(str(s[name]))


def _read(driver, s: dict) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    want = {name: str(s[name]) for name in _fields(s)}
    current = "return window.landscapeExplorer.current().raw"
    WebDriverWait(driver, 10).until(
        lambda d: all(d.execute_script(current)[k] == v for k, v in want.items())
    )
    found = driver.execute_async_script(READ)
    assert "failed" not in found, found
    return found


@pytest.fixture(scope="module")
def page(server, browser):  # noqa: F811 - the fixtures imported from test_browser
    size = browser.get_window_size()
    browser.set_window_size(WIDTH, 1000)
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(f"{server}/{PAGE}")
    browser.execute_async_script(
        "const done = arguments[0];"
        "(function wait() { window.landscapeExplorer ? "
        "window.landscapeExplorer.rendered().then(done) : setTimeout(wait, 50); })();"
    )
    yield browser
    browser.set_window_size(size["width"], size["height"])


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_is_built_with_plotly_from_the_package(page):
    html = (HTML / PAGE).read_text()
    assert "_static/plotly.min.js" in html and "_static/landscape_explorer.js" in html
    assert (HTML / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    other = (HTML / "book" / "how_to_run.html").read_text()
    assert "plotly.min.js" not in other, "Plotly.js is loaded only on the explorer page"


def test_the_page_opens_on_its_defaults(page):
    found = _read(page, DEFAULTS)
    assert found["error"] is None and found["outputShown"] and not found["messageShown"]
    expected = library_map(DEFAULTS)
    assert torch.equal(torch.tensor(found["map"], dtype=torch.float64), expected)
    assert not _console_errors(page)


@pytest.mark.parametrize("s", SETTINGS, ids=map(_id, SETTINGS))
def test_the_page_counts_paths_as_the_library_does(page, s):
    _set(page, s)
    found = _read(page, s)
    assert found["error"] is None, found["error"]
    expected = library_map(s)
    shown = torch.tensor(found["map"], dtype=torch.float64)
    assert shown.shape == expected.shape
    assert expected.max() < 2**53  # integers a double holds exactly
    assert torch.equal(shown, expected), (shown - expected).abs().max()
    assert [[int(v) for v in row] for row in found["exact"]] == expected.long().tolist()
    lib_cv, lib_border = library_figures(expected)
    for name, got, want in (
        ("cv", found["cv"], lib_cv),
        ("border ratio", found["borderRatio"], lib_border),
    ):
        if want is None:
            assert got is None, f"{name}: the page shows {got} where the library has none"
        else:
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), (name, got, want)
    blind = int((expected == 0).sum())
    assert found["blind"] == blind
    assert (found["blindText"] == "none") == (blind == 0)
    # the plots were drawn, at a size a reader can see
    for key in ("mapSvg", "mapImage", "profileSvg"):
        assert found[key] and found[key]["width"] > 100 and found[key]["height"] > 100, (
            key,
            found[key],
        )
    assert not _console_errors(page)


@pytest.mark.parametrize("s, control, words", REFUSED, ids=[_id(s) for s, _, _ in REFUSED])
def test_settings_the_library_refuses_show_a_message_naming_the_setting(page, s, control, words):
    _set(page, s)
    found = _read(page, s)
    if control is None:  # a valid setting after refused ones: the map is back
        assert found["error"] is None and found["outputShown"] and not found["messageShown"]
        assert torch.equal(torch.tensor(found["map"], dtype=torch.float64), library_map(s))
        return
    model, size = equivalent_net(s), (1, s["height"], s["width"])
    with pytest.raises(ValueError, match="too small"):
        path_count(model, size)
    with pytest.raises(RuntimeError):  # and so does PyTorch
        model(torch.zeros(1, *size))
    assert found["error"]["setting"] == control
    assert found["messageShown"] and not found["outputShown"]
    assert words in found["message"], found["message"]
    assert found["invalid"] == [control]
    assert not _console_errors(page)


def test_a_number_out_of_range_names_the_setting(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _set(page, DEFAULTS)
    kernel = page.find_element(By.ID, "lx-kernel")
    kernel.click()
    kernel.send_keys(Keys.CONTROL, "a")
    kernel.send_keys("0")
    found = page.execute_async_script(READ)
    assert found["messageShown"] and not found["outputShown"]
    assert "Kernel size must be a whole number from 1 to 11" in found["message"]
    assert found["invalid"] == ["kernel"]
    kernel.send_keys(Keys.BACKSPACE, "3")
    found = page.execute_async_script(READ)
    assert found["error"] is None and found["outputShown"]


FOCUSED = "return document.activeElement.name || document.activeElement.id;"


def test_every_control_is_reached_and_set_with_the_keyboard(page):
    """Tab walks the controls in reading order; arrow keys choose a padding, a pooling and a
    rounding, digits set the numbers: a whole setting made without the mouse."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _set(page, DEFAULTS)
    page.execute_script("document.getElementById('lx-padding').focus()")
    visited = []
    for _ in range(8):
        visited.append(page.execute_script(FOCUSED))
        ActionChains(page).send_keys(Keys.TAB).perform()
    # with no pooling its size, stride and rounding are disabled, and Tab skips them
    assert visited == [
        "padding",
        "kernel",
        "stride",
        "dilation",
        "depth",
        "pool",
        "height",
        "width",
    ]

    page.execute_script("document.getElementById('lx-padding').focus()")
    keys = ActionChains(page)
    keys.send_keys(Keys.END)  # the last padding: full
    keys.send_keys(Keys.TAB, Keys.TAB, Keys.TAB, Keys.TAB, Keys.TAB)  # to the pooling radios
    keys.send_keys(Keys.ARROW_RIGHT)  # none -> max, which enables the pooling fields
    keys.send_keys(Keys.TAB).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
    keys.send_keys("3")  # pooling size
    keys.send_keys(Keys.TAB).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
    keys.send_keys("2")  # pooling stride
    keys.send_keys(Keys.TAB, Keys.ARROW_DOWN)  # rounding: floor -> ceil
    keys.send_keys(Keys.TAB).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
    keys.send_keys("15")  # height
    keys.perform()
    want = dict(DEFAULTS, padding="full", pool="max", poolSize=3, poolStride=2, rounding="ceil")
    want["height"] = 15
    found = _read(page, want)
    assert found["error"] is None
    assert torch.equal(torch.tensor(found["map"], dtype=torch.float64), library_map(want))
    assert not _console_errors(page)


STYLE = """
const title = document.querySelector('#lx-map .g-xtitle text');
const probe = document.createElement('span');
document.body.appendChild(probe);
const text = getComputedStyle(probe).color;
probe.remove();
return {title: title ? title.style.fill : null, text: text,
        colorbar: Boolean(document.querySelector('#lx-map .colorbar')),
        ytitle: (document.querySelector('#lx-map .g-ytitle text') || {}).textContent,
        xtitle: (document.querySelector('#lx-map .g-xtitle text') || {}).textContent};
"""


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_the_plots_follow_light_and_dark_mode(page, mode):
    """Axis titles take the theme's text colour, the map has its colour bar; a screenshot per
    mode for review."""
    s = dict(DEFAULTS, stride=2, depth=2, height=17, width=17)
    _set(page, s)
    _read(page, s)
    page.execute_script(
        "document.documentElement.dataset.theme = arguments[0];"
        "document.documentElement.dataset.mode = arguments[0];",
        mode,
    )
    page.execute_async_script(
        "const done = arguments[0];"
        "setTimeout(() => window.landscapeExplorer.rendered().then(done), 100);"
    )
    style = page.execute_script(STYLE)
    assert (
        style["colorbar"] and style["xtitle"] == "pixel column" and style["ytitle"] == "pixel row"
    )
    assert "".join(style["title"].split()) == "".join(style["text"].split()), style
    page.execute_script("document.getElementById('lx-form').scrollIntoView()")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOTS / f"landscape_explorer-{WIDTH}-{mode}.png"))
    assert not _console_errors(page)
