"""A small training project: a classifier on scikit-learn's bundled breast-cancer data."""
