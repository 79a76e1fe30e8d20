import torch

from lightning_cnnviz.core import labels


def test_labels_draw_text_pixels_present_and_clipped():
    canvas = torch.zeros(3, 20, 40, dtype=torch.uint8)
    out = labels.draw_text(canvas, "7", 2, 3, color=(255, 0, 0))
    painted = out[0] > 0
    rows, cols = painted.nonzero().unbind(1)
    assert painted.any() and not out[1:].any()  # red only
    assert rows.min() >= 3 and rows.max() < 3 + 11 and cols.min() >= 2 and cols.max() < 2 + 6
    assert not canvas.any()  # a copy
    assert torch.equal(labels.draw_text(canvas, " ", 0, 0), canvas)
    edge = labels.draw_text(canvas, "88888888", 30, 15)  # runs off the right and bottom edges
    assert edge.shape == canvas.shape and edge[:, 15:, 30:].any()
    two = labels.draw_text(canvas, "7", 0, 0, scale=2)[0] > 0
    assert two.sum() == 4 * painted.sum()


def test_labels_caption_label_strip_above_tile():
    tile = torch.full((3, 112, 112), 100, dtype=torch.uint8)
    labelled = labels.caption(tile, "true 7 / pred 1 0.83")
    text_w, text_h = labels.text_size("true 7 / pred 1 0.83")
    assert labelled.shape == (3, 112 + text_h + 2, max(112, text_w + 2))
    assert torch.equal(labelled[:, text_h + 2 :, :112], tile)
    assert (labelled[:, : text_h + 2] == 255).any()  # white label pixels


def _words(band: torch.Tensor, min_gap: int = 3) -> int:
    """How many words a ``(3, h, w)`` text band holds: inked columns ``min_gap`` blanks apart."""
    inked = (band > 0).any(0).any(0).tolist()
    words, blank = 0, min_gap
    for on in inked:
        if on and blank >= min_gap:
            words += 1
        blank = 0 if on else blank + 1
    return words


def test_labels_bar_chart_numbers_and_names_stand_apart():
    chart = labels.bar_chart([1.0] * 10, [str(k) for k in range(10)])
    numbers = chart[:, : labels.GLYPH_H, :]  # "100" above every bar
    names = chart[:, -labels.GLYPH_H :, :]
    assert _words(numbers) == 10  # ten "100"s at least 3 px apart, not "100100100..."
    assert _words(names) == 10


def test_labels_legible_width_keeps_glyphs_seven_px_in_a_card():
    for scale in (1, 2):
        width = labels.legible_width(scale)
        assert labels.rendered_glyph_px(width, scale) >= labels.MIN_GLYPH_PX
        assert labels.rendered_glyph_px(width + 2, scale) < labels.MIN_GLYPH_PX + 0.1
    assert labels.columns_that_fit(124, 16) * 124 <= labels.legible_width()


def test_labels_draw_texts_equals_draw_text_one_by_one():
    base = torch.zeros(3, 14, 40, dtype=torch.uint8)
    placed = [("12", 1, 0), ("x", 20, 3), ("clipped", 36, 6)]
    one_by_one = base
    for text, x, y in placed:
        one_by_one = labels.draw_text(one_by_one, text, x, y, (200, 100, 50))
    together = labels.draw_texts(base, placed, (200, 100, 50))
    assert torch.equal(together, one_by_one) and together.any() and not base.any()


def test_labels_draw_text_above_the_image_keeps_the_glyphs_lower_rows():
    # held out (setups hunt 22): a stage's name centred on 4-pixel rows (8 x 128 images)
    # started above the image, and the sliced region no longer fitted the glyph
    full = labels.draw_text(torch.zeros(3, 11, 12, dtype=torch.uint8), "8", 0, 0)
    low = labels.draw_text(torch.zeros(3, 4, 12, dtype=torch.uint8), "8", 0, -3)
    assert low.shape == (3, 4, 12) and torch.equal(low, full[:, 3:7])
    left = labels.draw_text(torch.zeros(3, 11, 4, dtype=torch.uint8), "8", -2, 0)
    assert torch.equal(left, full[:, :, 2:6])
