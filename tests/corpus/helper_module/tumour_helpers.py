"""Helpers for helper_module.ipynb: splitting and scoring, used while training only."""

from sklearn.metrics import accuracy_score, precision_score, recall_score
from sklearn.model_selection import train_test_split


def split(frame, target, test_size=0.25, seed=0):
    """Stratified train/test split of a DataFrame into X and y parts."""
    X = frame.drop(columns=[target])
    y = frame[target]
    return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)


def scores(y_true, y_pred, positive="malignant"):
    """Accuracy, precision and recall of one class, as a dict of floats."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, pos_label=positive)),
        "recall": float(recall_score(y_true, y_pred, pos_label=positive)),
    }
