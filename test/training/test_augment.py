"""Augmentation: crops keep image and label aligned; pasted objects land where they should."""

import numpy as np
import pytest

from seg_node.training.augment import augment, AugmentConfig, magnify, paste_objects

POLE, ROAD, SIGN = 2, 3, 6


def frames(width: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return a road frame and a donor with a pole in column 1 and a sign at (0, 5)."""
    image = np.full((4, width, 3), 10, np.uint8)
    label = np.full((4, width), ROAD, np.uint8)
    donor_image = np.arange(4 * width * 3, dtype=np.uint8).reshape(4, width, 3)
    donor_label = np.full((4, width), ROAD, np.uint8)
    donor_label[:, 1] = POLE
    donor_label[0, 5] = SIGN
    return image, label, donor_image, donor_label


def test_pasted_pole_moves_by_the_shift_and_keeps_its_rows_and_pixels():
    image, label, donor_image, donor_label = frames()
    pasted_image, pasted_label = paste_objects(image, label, donor_image, donor_label,
                                               np.array([POLE]), shift=3, flip=False)
    expected = np.full_like(label, ROAD)
    expected[:, 4] = POLE
    np.testing.assert_array_equal(pasted_label, expected)
    np.testing.assert_array_equal(pasted_image[:, 4], donor_image[:, 1])
    np.testing.assert_array_equal(np.delete(pasted_image, 4, axis=1), 10)
    assert (label == ROAD).all() and (image == 10).all()


def test_flip_mirrors_the_donor_before_a_left_shift():
    image, label, donor_image, donor_label = frames()
    _, pasted_label = paste_objects(image, label, donor_image, donor_label,
                                    np.array([POLE, SIGN]), shift=-2, flip=True)
    assert np.argwhere(pasted_label == POLE)[:, 1].tolist() == [4, 4, 4, 4]
    assert np.argwhere(pasted_label == SIGN).tolist() == [[0, 0]]


def test_objects_shifted_past_the_edge_are_dropped():
    image, label, donor_image, donor_label = frames()
    for shift in (-2, 8, -8):
        _, pasted_label = paste_objects(image, label, donor_image, donor_label,
                                        np.array([POLE]), shift=shift, flip=False)
        assert not (pasted_label == POLE).any()


def test_a_smaller_donor_pastes_into_the_top_left_overlap():
    image, label, _, _ = frames(width=8)
    _, _, donor_image, donor_label = frames(width=6)
    _, pasted_label = paste_objects(image, label, donor_image[:2], donor_label[:2],
                                    np.array([POLE, SIGN]), shift=0, flip=False)
    assert np.argwhere(pasted_label != ROAD).tolist() == [[0, 1], [0, 5], [1, 1]]


def test_real_frames_receive_every_donor_pole_pixel(camvid_pairs):
    (image, label), (donor_image, donor_label) = camvid_pairs[0], camvid_pairs[2]
    donor_poles = donor_label == POLE
    pasted_image, pasted_label = paste_objects(image, label, donor_image, donor_label,
                                               np.array([POLE]), shift=0, flip=False)
    assert donor_poles.sum() > 300
    assert (pasted_label[donor_poles] == POLE).all()
    np.testing.assert_array_equal(pasted_image[donor_poles], donor_image[donor_poles])
    np.testing.assert_array_equal(pasted_label[~donor_poles], label[~donor_poles])


def test_magnify_makes_a_far_pole_wider_taller_and_lower():
    label = np.full((41, 41), ROAD, np.uint8)
    label[21:25, 25] = POLE  # 1 px wide, rows 21-24, right of and below the centre (20, 20)
    image = np.where(label[..., None] == POLE, 200, 10).astype(np.uint8).repeat(3, axis=2)
    big_image, big_label = magnify(image, label, 3.0)
    rows, columns = np.nonzero(big_label == POLE)
    # x' = 3 (x - 20) + 20 on pixel extents: column 25 ([24.5, 25.5]) -> [33.5, 36.5], i.e.
    # columns 34-36; rows 21-24 ([20.5, 24.5]) -> [21.5, 33.5], i.e. rows 22-33.
    assert sorted(set(columns.tolist())) == [34, 35, 36]
    assert rows.min() == 22 and rows.max() == 33
    assert (big_label == POLE).sum() == 9 * (label == POLE).sum()
    assert (big_image[23:33, 35] == 200).all() and (big_image[:, :33] == 10).all()
    assert big_label.shape == label.shape and big_image.shape == image.shape


def test_magnify_by_one_changes_nothing(camvid_pairs):
    image, label = camvid_pairs[2]
    same_image, same_label = magnify(image, label, 1.0)
    np.testing.assert_array_equal(same_label, label)
    np.testing.assert_array_equal(same_image, image)


@pytest.mark.parametrize('scale', [0.5, 1.0, 1.8])
def test_crop_keeps_image_and_label_aligned(camvid_pairs, scale):
    image, label = camvid_pairs[0]
    config = AugmentConfig(crop=(96, 128), scale=(scale, scale), brightness=0.0,
                           contrast=0.0, saturation=0.0)
    # A label painted from the image's own green channel lets us check alignment.
    marker = (image[..., 1] > 100).astype(np.uint8)
    crop_image, crop_label = augment(image, marker, config, np.random.default_rng(4), 11)
    assert crop_image.shape == (96, 128, 3) and crop_label.shape == (96, 128)
    inside = crop_label != 11
    agreement = ((crop_image[..., 1] > 100) == (crop_label == 1))[inside].mean()
    assert agreement > 0.95
