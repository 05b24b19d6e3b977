"""The demo's example pictures match the model it starts with: no photographs for the offline default model."""
from snapsight.demo.examples import _PHOTOS, example_files


def test_photos_only_for_a_model_that_knows_photos():
    everything, no_photos = example_files(), example_files(knows_photos=False)
    assert {p.name for p in everything} - {p.name for p in no_photos} == set(_PHOTOS)
    assert no_photos and all(p.name.startswith("emoji-") for p in no_photos)
