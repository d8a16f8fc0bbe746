"""Numbers the paper states (Table 2, Section 2.3) and numbers anyone can recompute by hand."""

import pytest

import vggspec
from vggspec.spec.analysis import min_input_size

from .conftest import PAPER_CONFIGS

# Table 2 with biases (PAPER.md): torchvision's vgg11/13/16/19 have the same counts.
TABLE_2 = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}
TABLE_2_MILLIONS = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
# Receptive field at pool5 (Section 2.3 / Araujo et al. recurrences).
POOL5_RF = {"A": 150, "A-LRN": 150, "B": 156, "C": 156, "D": 212, "E": 268}


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_table_2_parameters(name, paper_specs):
    analysis = vggspec.analyze(paper_specs[name])
    assert analysis.params == TABLE_2[name]
    assert round(analysis.params / 1e6) == TABLE_2_MILLIONS[name]
    assert analysis.weight_layers == WEIGHT_LAYERS[name]


def test_d_macs_equal_fvcores_count(paper_specs):
    # fvcore's count of torchvision's vgg16 (conv + linear) at 224×224; see also test_crosscheck.
    analysis = vggspec.analyze(paper_specs["D"])
    assert analysis.macs == 15_470_264_320
    assert analysis.flops == 2 * analysis.macs


def _hand_counted(channels_per_stage: list[list[tuple[int, int]]], size: int = 224) -> tuple[int, int]:
    """Params and MACs of a VGG from first principles: (kernel, out) per conv, 2×2 pools between stages."""
    params = macs = 0
    c_in, side = 3, size
    for stage in channels_per_stage:
        for kernel, c_out in stage:
            params += kernel * kernel * c_in * c_out + c_out
            macs += kernel * kernel * c_in * c_out * side * side
            c_in = c_out
        side //= 2
    for f_in, f_out in ((c_in * side * side, 4096), (4096, 4096), (4096, 1000)):
        params += f_in * f_out + f_out
        macs += f_in * f_out
    return params, macs


def test_e_against_a_hand_count(paper_specs):
    e = [[(3, 64)] * 2, [(3, 128)] * 2, [(3, 256)] * 4, [(3, 512)] * 4, [(3, 512)] * 4]
    params, macs = _hand_counted(e)
    analysis = vggspec.analyze(paper_specs["E"])
    assert (analysis.params, analysis.macs) == (params, macs)


def test_c_one_by_one_convs_against_a_hand_count(paper_specs):
    c = [[(3, 64)] * 2, [(3, 128)] * 2, [(3, 256)] * 2 + [(1, 256)], [(3, 512)] * 2 + [(1, 512)]]
    c.append([(3, 512)] * 2 + [(1, 512)])
    assert (vggspec.analyze(paper_specs["C"]).params, vggspec.analyze(paper_specs["C"]).macs) == _hand_counted(c)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_receptive_field_at_pool5(name, paper_specs):
    pool5 = vggspec.analyze(paper_specs[name]).layer("pool5")
    assert pool5.receptive_field == POOL5_RF[name]
    assert pool5.effective_stride == 32
    assert pool5.output_shape == (512, 7, 7)


def test_d_pool5_effective_padding_and_fc6_view(paper_specs):
    analysis = vggspec.analyze(paper_specs["D"])
    assert analysis.layer("pool5").effective_padding == 90
    # FC6 seen as a 7×7 convolution (Section 3.2): 212 + 6·32 pixels.
    assert analysis.layer("fc6").receptive_field == 404


def _conv_weights(spec_text: str) -> int:
    analysis = vggspec.analyze(vggspec.parse(spec_text))
    return sum(layer.params - layer.output_shape[0] for layer in analysis.layers if layer.kind == "conv")


@pytest.mark.parametrize("channels", [8, 64, 512])
def test_section_2_3_three_3x3_against_one_7x7(channels):
    head = f"input: 14x14 {channels} channels\n"
    stack = vggspec.parse(head + f"conv3-{channels} ×3\nFC-10")
    single = vggspec.parse(head + f"conv7-{channels}\nFC-10")
    # 3·(3²C²) = 27C² weights against 49C² (81% more), biases aside.
    assert _conv_weights(head + f"conv3-{channels} ×3\nFC-10") == 27 * channels**2
    assert _conv_weights(head + f"conv7-{channels}\nFC-10") == 49 * channels**2
    # ... and both see a 7×7 region; two 3×3 see 5×5.
    assert vggspec.analyze(stack).layers[2].receptive_field == 7
    assert vggspec.analyze(single).layers[0].receptive_field == 7
    assert vggspec.analyze(stack).layers[1].receptive_field == 5


def test_one_by_one_convs_do_not_change_the_receptive_field(paper_specs):
    b, c = (vggspec.analyze(paper_specs[n]) for n in ("B", "C"))
    assert [la.receptive_field for la in c.layers if la.kind == "maxpool"] == [
        la.receptive_field for la in b.layers if la.kind == "maxpool"
    ]


def test_shapes_through_d(paper_specs):
    analysis = vggspec.analyze(paper_specs["D"])
    pools = [la.output_shape for la in analysis.layers if la.kind == "maxpool"]
    assert pools == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]
    assert analysis.layers[-1].output_shape == (1000, 1, 1)


def test_activations_are_every_layers_output(paper_specs):
    analysis = vggspec.analyze(paper_specs["D"])
    by_hand = (
        2 * 64 * 224**2 + 64 * 112**2
        + 2 * 128 * 112**2 + 128 * 56**2
        + 3 * 256 * 56**2 + 256 * 28**2
        + 3 * 512 * 28**2 + 512 * 14**2
        + 3 * 512 * 14**2 + 512 * 7**2
        + 4096 + 4096 + 1000 + 1000
    )  # fmt: skip
    assert analysis.activations == by_hand
    assert analysis.activation_bytes == 4 * by_hand
    # PAPER.md: the per-layer rows of VGG-16 (input image included) sum to about 15.2M.
    assert round((analysis.activations + 3 * 224 * 224) / 1e6, 1) == 15.2


def test_batch_norm_adds_scale_and_shift_per_channel():
    plain = vggspec.analyze(vggspec.parse("input: 32\nconv3-16\nFC-10"))
    bn = vggspec.analyze(vggspec.parse("input: 32\nconv3-16 [bn]\nFC-10"))
    assert bn.params - plain.params == 2 * 16
    assert bn.macs == plain.macs


def test_another_input_size(paper_specs):
    d = paper_specs["D"]
    at_384 = vggspec.analyze(d, input_size=384)
    assert at_384.input_shape == (3, 384, 384)
    assert at_384.layer("pool5").output_shape == (512, 12, 12)
    # the first FC layer flattens the bigger map
    assert at_384.layer("fc6").params == 512 * 12 * 12 * 4096 + 4096
    assert vggspec.analyze(d).input_shape == (3, 224, 224)  # the spec itself is unchanged


@pytest.mark.parametrize(
    "layers",
    [
        "maxpool\n" * 5,
        "maxpool [size=3, stride=2]\n" * 3,
        "conv5-8\nmaxpool [size=3, stride=3]\nmaxpool\n",
        "LRN\n",
    ],
)
def test_smallest_valid_input_is_the_smallest_that_analyses(layers):
    text = layers + "FC-10\n"
    smallest = min_input_size(vggspec.parse(text, check=False))
    spec = vggspec.parse(text, check=False)
    for size in range(1, smallest):
        with pytest.raises(vggspec.ShapeError):
            vggspec.analyze(spec, input_size=size)
    vggspec.analyze(spec, input_size=smallest)
    assert vggspec.analyze(spec, input_size=smallest).min_input_size == smallest


def test_paper_configs_need_32_pixels(paper_specs):
    assert {vggspec.analyze(s).min_input_size for s in paper_specs.values()} == {32}


def test_to_dict_has_the_documented_keys(paper_specs):
    data = vggspec.analyze(paper_specs["A"]).to_dict()
    assert {"name", "source", "input", "layers", "total"} <= set(data)
    assert data["name"] == "A" and data["source"].endswith("A.vgg") and data["input"] == [3, 224, 224]
    layer_keys = {
        "index", "name", "kind", "line", "output_shape", "params", "macs", "backward_macs", "activations",
        "receptive_field", "effective_stride", "effective_padding",
    }  # fmt: skip
    assert all(layer_keys <= set(layer) for layer in data["layers"])
    assert data["layers"][0]["name"] == "conv1_1" and data["layers"][0]["output_shape"] == [64, 224, 224]
    assert {"params", "macs", "backward_macs", "activations"} <= set(data["total"])
    assert data["total"]["params"] == TABLE_2["A"]


def test_layer_names_follow_caffe(paper_specs):
    names = [la.name for la in vggspec.analyze(paper_specs["A-LRN"]).layers]
    assert names[:4] == ["conv1_1", "norm1", "pool1", "conv2_1"]
    assert names[-4:] == ["fc6", "fc7", "fc8", "prob"]
    e_names = [la.name for la in vggspec.analyze(paper_specs["E"]).layers]
    assert "conv5_4" in e_names and len(set(e_names)) == len(e_names)


def test_graph_is_a_chain_from_the_input(paper_specs):
    graph = vggspec.to_graph(paper_specs["B"])
    assert graph.number_of_nodes() == len(paper_specs["B"].layers) + 1
    assert list(graph.successors("input")) == ["conv1_1"]
    assert graph.nodes["fc6"]["dropout"] == 0.5 and graph.nodes["fc8"]["dropout"] == 0.0


def test_a_test_scale_off_the_pooling_grid_leaves_a_border_unused():
    """Three poolings of stride 2: Q = 37 leaves 5 rows outside every pooling window, 32 and 40 none.
    Cross-checked against the network's own arithmetic: the map that reaches the classifier × 8."""
    from vggspec.spec.analysis import scales_using_every_pixel, unused_pixels

    spec = vggspec.parse("input: 32x32 RGB\nconv3-8\nmaxpool\nconv3-16\nmaxpool\nconv3-16\nmaxpool\nFC-32\nFC-10\n")
    assert [unused_pixels(spec, q) for q in (32, 33, 37, 39, 40)] == [0, 1, 5, 7, 0]
    assert scales_using_every_pixel(spec, 37) == (32, 40)
    d = vggspec.load("D")
    assert [unused_pixels(d, q) for q in (224, 256, 288, 352, 384, 416)] == [0] * 6  # the paper's scales
    assert unused_pixels(d, 400) == 400 - 12 * 32


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_an_analysis_repr_is_one_line_with_its_totals(name, paper_specs):
    """It was the dataclass's, 8,000 characters of the spec and every layer."""
    analysis = vggspec.analyze(paper_specs[name])
    text = repr(analysis)
    assert text.startswith(f"<Analysis of {name} at 224×224: {TABLE_2[name]:,} params, ") and text.endswith("MACs>")
    assert "\n" not in text and len(text) < 80
    dense = repr(vggspec.analyze(paper_specs[name], input_size=384, dense=True))
    assert dense.startswith(f"<Analysis of {name} (dense) at 384×384: {TABLE_2[name]:,} params")


def test_the_repr_gives_macs_as_the_reports_do(paper_specs):
    assert repr(vggspec.analyze(paper_specs["D"])).endswith(", 15.5 GMACs>")  # 15,470,264,320: Table 2's 15.5 G
    assert repr(vggspec.analyze(vggspec.load("small/A-narrow-32"))).endswith(", 2.59 MMACs>")  # 2,589,312
