"""How far to trust a classifier: accuracy per class and group, calibration, corruptions, attacks, cost, saliency."""
