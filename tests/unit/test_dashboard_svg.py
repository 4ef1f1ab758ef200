"""The DAG drawing: layers from topological generations, every step drawn once, colours by phase, and
every string from the pipeline escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from orchest_operator.dashboard import svg

NS = {"svg": "http://www.w3.org/2000/svg"}
DIAMOND = [
    svg.GraphStep("load", "load.ipynb"),
    svg.GraphStep("left", "left.py", ("load",)),
    svg.GraphStep("right", "right.sh", ("load",)),
    svg.GraphStep("end", "end.py", ("left", "right")),
]


def test_columns_follow_topological_generations() -> None:
    drawn = svg.layout(DIAMOND)
    xs = {name: x for name, (x, _) in drawn.positions.items()}
    assert xs["load"] < xs["left"] == xs["right"] < xs["end"]
    assert drawn.positions["left"][1] < drawn.positions["right"][1], "declaration order inside a column"
    assert drawn.edges == [("load", "left"), ("load", "right"), ("left", "end"), ("right", "end")]
    assert drawn.width == 2 * svg.MARGIN + 3 * svg.BOX_WIDTH + 2 * svg.COLUMN_GAP


def test_barycenter_sweeps_untangle_crossed_edges() -> None:
    # a1 feeds b2 and a2 feeds b1: declared order would cross the two edges, the sweeps uncross them.
    steps = [
        svg.GraphStep("a1", "x.py"),
        svg.GraphStep("a2", "x.py"),
        svg.GraphStep("b1", "x.py", ("a2",)),
        svg.GraphStep("b2", "x.py", ("a1",)),
    ]
    y = {name: pos[1] for name, pos in svg.layout(steps).positions.items()}
    assert (y["a1"] < y["a2"]) == (y["b2"] < y["b1"])


def test_render_draws_every_step_and_edge_as_valid_svg() -> None:
    text = svg.render(DIAMOND, {"load": "Succeeded", "left": "Failed"}, title="diamond")
    root = ET.fromstring(text)
    steps = root.findall(".//svg:g[@data-step]", NS)
    assert [g.get("data-step") for g in steps] == ["load", "left", "right", "end"]
    assert len(root.findall(".//svg:path[@data-from]", NS)) == 4
    left = steps[1]
    assert left.get("data-phase") == "Failed" and "phase-failed" in left.get("class", "")
    assert left.find("svg:rect", NS).get("fill") == svg.PHASE_COLOURS["Failed"][0]
    assert steps[2].find("svg:rect", NS).get("fill") == svg.NO_PHASE[0]


def test_unknown_phases_are_drawn_plainly_with_their_name() -> None:
    text = svg.render([svg.GraphStep("a", "a.py")], {"a": "Frozen"})
    g = ET.fromstring(text).find(".//svg:g[@data-step='a']", NS)
    assert g.find("svg:rect", NS).get("fill") == svg.UNKNOWN_PHASE[0]
    assert g.get("class") == "step phase-frozen"
    assert "Frozen" in "".join(g.itertext())
    assert svg.phase_class("<b>") == "phase-b"
    assert svg.phase_class("") == "phase-unknown"


def test_strings_are_escaped() -> None:
    step = svg.GraphStep('x"><script>alert(1)</script>', "<script>.py")
    text = svg.render([step], {step.name: "<script>"}, title="<t>", links={step.name: '#"><x'})
    assert "<script>" not in text
    ET.fromstring(text)  # still well-formed


def test_long_labels_are_cut_but_kept_whole_in_the_title() -> None:
    long_file = "a/very/long/path/to/a/notebook/that/goes/on.ipynb"
    text = svg.render([svg.GraphStep("a", long_file)])
    g = ET.fromstring(text).find(".//svg:g[@data-step='a']", NS)
    assert long_file in g.find("svg:title", NS).text
    assert all(len(t.text or "") <= 26 for t in g.findall("svg:text", NS))


def test_a_thousand_steps_and_odd_input() -> None:
    steps = [svg.GraphStep(f"s{i}", "x.py", (f"s{i - 1}",) if i else ()) for i in range(1000)]
    root = ET.fromstring(svg.render(steps))
    assert len(root.findall(".//svg:g[@data-step]", NS)) == 1000
    # A dependency on a step not drawn is ignored; a cycle (never a valid pipeline) still draws.
    assert svg.layout([svg.GraphStep("a", "a.py", ("ghost",))]).edges == []
    cycle = svg.layout([svg.GraphStep("a", "a.py", ("b",)), svg.GraphStep("b", "b.py", ("a",))])
    assert set(cycle.positions) == {"a", "b"}
    assert svg.graph_steps([{"name": "a", "dependsOn": "oops"}, "junk", {"file": "x"}]) == [
        svg.GraphStep("a", "", ())
    ]
