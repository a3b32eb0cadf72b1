"""The fixed action script whose frames the golden-hash tests pin (positions from the layout)."""

from infinipaint.minipaint import LAYOUT, Layout


def golden_script(layout: Layout = LAYOUT) -> list[tuple[int, int, int]]:
    """Presses on controls come from `layout`; strokes are at fixed points, some leaving the canvas."""
    def click(name):
        x, y = layout.center(name)
        return [(x, y, 1), (x, y, 0)]

    def stroke(points):
        return [(x, y, 1) for x, y in points] + [(*points[-1], 0)]

    smallest, eighth = layout.sizes[0], layout.sizes[7]
    s = []
    s += stroke([(20, 50), (32, 58), (44, 70), (60, 71), (70, 90)])  # default pen
    s += click("color1") + click("slider")
    s += stroke([(120, 200), (130, 190), (140, 180), (200, 40), (210, 5), (223, 223)])  # exits canvas
    s += [(*layout.slider_point(smallest), 1), (*layout.slider_point(eighth), 1), (10, 10, 1), (10, 10, 0)]
    s += click("color3") + stroke([(5, 100), (5, 100), (220, 100)])
    s += click("eraser") + stroke([(100, 40), (100, 220)])
    s += click("color5") + click("pen") + [(150, 150, 1), (150, 150, 0)]
    s += [(*layout.center("pen"), 1), (120, 120, 1), (130, 130, 1), (130, 130, 0)]  # drag from button
    return s
