"""Writes tests/corpus/<name>/: notebooks written here, each reproducing a pattern that data
scientists really write, annotated as on a first try from README.md and docs/ only.

Each notebook's first markdown cell cites, as a fact, the public notebook (or script) where its
pattern was seen, at a commit; none of that code is reproduced here. The data ship with a package
(scikit-learn's and statsmodels' bundled datasets) or are generated with a fixed seed: nothing is
downloaded. Training takes seconds. ``metadata.nb2prod_test.unseen`` holds inputs that are not
among the examples; tests/e2e/test_corpus.py packages each notebook from the installed wheel,
serves it and sends them to ``/v1/predict`` and ``/v1/predict_batch``.

Run this script after changing a notebook and commit what it writes with it:
`python tests/corpus/make_corpus.py`.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
GITHUB = "https://github.com"


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str
    path: str

    @property
    def url(self) -> str:
        return f"{GITHUB}/{self.repo}/blob/{self.commit}/{self.path.replace(' ', '%20')}"


@dataclass(frozen=True)
class Entry:
    name: str  # folder and notebook stem
    sources: tuple[Source, ...]
    title: str
    about: str  # what the pattern is, in a sentence or two
    cells: tuple[str, ...]  # code cells; a cell starting with "MD " is markdown
    config: str  # nb2prod.toml
    unseen: tuple[dict[str, Any], ...]  # inputs that are not examples
    files: dict[str, str] = field(default_factory=dict)  # helper modules beside the notebook
    tags: dict[int, str] = field(default_factory=dict)  # code cell index -> role given as a tag
    # a bug a first try of this pattern really has (seen while making the corpus), for the fix
    # loop: the code as first written (`buggy`) and as fixed (`fixed`, what the notebook holds),
    # and what the package of the buggy notebook must say
    bug: dict[str, Any] = field(default_factory=dict)


def md(text: str) -> str:
    return "MD " + textwrap.dedent(text).strip()


def code(text: str) -> str:
    return textwrap.dedent(text).strip()


TITANIC = Entry(
    name="titanic",
    sources=(
        Source(
            "amueller/scipy-2016-sklearn",
            "71406143a67a76e222f36a29d5ef3c8db0ce011e",
            "notebooks/10 Case Study - Titanic Survival.ipynb",
        ),
    ),
    title="Titanic survival",
    about="Loose pandas cells (drop, fillna, get_dummies) on a Kaggle-style passenger table, a "
    "random forest, and a service that rebuilds the dummies with `reindex`; `Age` and `Embarked` "
    "may be missing.",
    cells=(
        code("""
            #| nb2prod: setup
            from typing import Literal, Optional

            import numpy as np
            import pandas as pd
            from pydantic import BaseModel, Field
            from sklearn.ensemble import RandomForestClassifier
            from sklearn.metrics import accuracy_score
            from sklearn.model_selection import train_test_split
            """),
        md("""
            ## The data

            The passenger list has the columns of Kaggle's `train.csv`. It is generated here with a
            fixed seed (this machine has no network).
            """),
        code("""
            #| nb2prod: train
            rng = np.random.default_rng(1912)
            n = 891
            pclass = rng.choice([1, 2, 3], size=n, p=[0.24, 0.21, 0.55])
            sex = rng.choice(["male", "female"], size=n, p=[0.65, 0.35])
            age = np.round(rng.normal(30, 14, size=n).clip(0.5, 80), 1)
            age[rng.random(n) < 0.2] = np.nan
            sibsp = rng.poisson(0.5, size=n)
            parch = rng.poisson(0.4, size=n)
            fare = np.round(rng.gamma(2.0, 9.0 * (4 - pclass)), 2)
            embarked = rng.choice(["S", "C", "Q"], size=n, p=[0.72, 0.19, 0.09]).astype(object)
            embarked[rng.random(n) < 0.01] = None
            score = (
                2.4 * (sex == "female") - 0.9 * (pclass - 2)
                - 0.03 * (np.nan_to_num(age, nan=30.0) - 30) - 0.3 * sibsp + 0.01 * fare - 0.6
            )
            survived = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(int)
            train = pd.DataFrame({
                "PassengerId": np.arange(1, n + 1), "Survived": survived, "Pclass": pclass,
                "Name": [f"Passenger {i}" for i in range(n)], "Sex": sex, "Age": age,
                "SibSp": sibsp, "Parch": parch, "Ticket": [f"T{rng.integers(1e5)}" for _ in range(n)],
                "Fare": fare, "Cabin": None, "Embarked": embarked,
            })
            """),
        code("""
            #| nb2prod: skip
            train.head()
            """),
        code("""
            #| nb2prod: skip
            train.isnull().sum()
            """),
        code("""
            #| nb2prod: train
            train = train.drop(["PassengerId", "Name", "Ticket", "Cabin"], axis=1)
            age_median = train["Age"].median()
            embarked_mode = train["Embarked"].mode()[0]
            train["Age"] = train["Age"].fillna(age_median)
            train["Embarked"] = train["Embarked"].fillna(embarked_mode)
            """),
        code("""
            #| nb2prod: train
            y = train["Survived"]
            X = pd.get_dummies(train.drop("Survived", axis=1))
            train_X, eval_X, train_y, eval_y = train_test_split(X, y, test_size=0.2, random_state=0)
            X.columns.tolist()
            """),
        code("""
            #| nb2prod: model
            model = RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0)
            model.fit(train_X, train_y)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                Pclass: Literal[1, 2, 3] = Field(description="Ticket class")
                Sex: Literal["male", "female"]
                Age: Optional[float] = Field(default=None, ge=0, le=100, description="Age in years")
                SibSp: int = Field(ge=0, le=10, description="Siblings and spouses aboard")
                Parch: int = Field(ge=0, le=10, description="Parents and children aboard")
                Fare: float = Field(ge=0, le=150, description="Ticket price")
                Embarked: Optional[Literal["S", "C", "Q"]] = None


            class Output(BaseModel):
                Survived: int = Field(description="1 if the passenger is predicted to survive")
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                df = pd.DataFrame([i.model_dump() for i in inputs])
                df["Age"] = df["Age"].fillna(age_median)
                df["Embarked"] = df["Embarked"].fillna(embarked_mode)
                df = pd.get_dummies(df)
                return df.reindex(columns=train_X.columns, fill_value=0)
            """),
        code("""
            #| nb2prod: evaluate
            metrics = {"accuracy": accuracy_score(eval_y, model.predict(eval_X))}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"Pclass": 3, "Sex": "male", "Age": 22.0, "SibSp": 1, "Parch": 0, "Fare": 7.25,
                 "Embarked": "S"},
                {"Pclass": 1, "Sex": "female", "Age": 38.0, "SibSp": 1, "Parch": 0, "Fare": 71.28,
                 "Embarked": "C"},
                {"Pclass": 3, "Sex": "female", "Age": None, "SibSp": 0, "Parch": 0, "Fare": 7.75,
                 "Embarked": "Q"},
            ]
            """),
        code("""
            #| nb2prod: skip
            submission = pd.DataFrame({"Survived": model.predict(eval_X)})
            submission.to_csv("submission.csv", index=False)
            """),
    ),
    config="""
        name = "titanic"
        version = "1.0.0"

        [gates]
        accuracy = ">= 0.7"
        """,
    unseen=(
        {"Pclass": 2, "Sex": "female", "Age": 27.0, "SibSp": 0, "Parch": 2, "Fare": 21.0,
         "Embarked": "S"},
        {"Pclass": 1, "Sex": "male", "Age": 54.0, "SibSp": 0, "Parch": 0, "Fare": 51.86,
         "Embarked": None},
        {"Pclass": 3, "Sex": "male", "Age": None, "SibSp": 2, "Parch": 1, "Fare": 23.45,
         "Embarked": "S"},
    ),
)  # fmt: skip


HELPER_MODULE = Entry(
    name="helper_module",
    sources=(
        Source(
            "amueller/scipy-2016-sklearn",
            "71406143a67a76e222f36a29d5ef3c8db0ce011e",
            "notebooks/05 Supervised Learning - Classification.ipynb",
        ),
    ),
    title="Tumour diagnosis with a helper module",
    about="The notebook imports functions from a module of its own beside it (`tumour_helpers.py`) "
    "in its first cell and uses them in training cells only; the service never calls them.",
    files={
        "tumour_helpers.py": '''
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
            ''',
    },
    cells=(
        code("""
            #| nb2prod: setup
            from typing import Literal

            import numpy as np
            import pandas as pd
            from pydantic import BaseModel, Field
            from sklearn.datasets import load_breast_cancer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            from tumour_helpers import scores, split

            FEATURES = ["mean radius", "mean texture", "mean smoothness", "mean concavity",
                        "worst area"]
            """),
        code("""
            #| nb2prod: train
            data = load_breast_cancer(as_frame=True)
            frame = data.frame[FEATURES].copy()
            frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
            X_train, X_test, y_train, y_test = split(frame, "diagnosis")
            """),
        code("""
            #| nb2prod: model
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            model.fit(X_train, y_train)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                mean_radius: float = Field(ge=5, le=30)
                mean_texture: float = Field(ge=5, le=45)
                mean_smoothness: float = Field(ge=0.04, le=0.2)
                mean_concavity: float = Field(ge=0, le=0.5)
                worst_area: float = Field(ge=150, le=4500)


            class Output(BaseModel):
                diagnosis: Literal["malignant", "benign"]
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                rows = [[i.mean_radius, i.mean_texture, i.mean_smoothness, i.mean_concavity,
                         i.worst_area] for i in inputs]
                return pd.DataFrame(rows, columns=FEATURES)
            """),
        code("""
            #| nb2prod: evaluate
            metrics = scores(y_test, model.predict(X_test))
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"mean_radius": 17.99, "mean_texture": 10.38, "mean_smoothness": 0.1184,
                 "mean_concavity": 0.3001, "worst_area": 2019.0},
                {"mean_radius": 12.05, "mean_texture": 14.63, "mean_smoothness": 0.0893,
                 "mean_concavity": 0.0233, "worst_area": 513.1},
            ]
            """),
    ),
    config="""
        name = "tumour-helpers"
        version = "1.0.0"

        [gates]
        accuracy = ">= 0.85"

        [evaluation]
        eval_x = "X_test"
        eval_y = "y_test"
        """,
    unseen=(
        {"mean_radius": 20.5, "mean_texture": 21.0, "mean_smoothness": 0.105,
         "mean_concavity": 0.21, "worst_area": 1850.0},
        {"mean_radius": 11.2, "mean_texture": 18.3, "mean_smoothness": 0.082,
         "mean_concavity": 0.012, "worst_area": 430.0},
    ),
)  # fmt: skip


LIGHTGBM_SEARCH = Entry(
    name="lightgbm_search",
    sources=(
        Source(
            "INRIA/scikit-learn-mooc",
            "e689cb54331027a55472902e08a0e2e5f2b48f7e",
            "notebooks/parameter_tuning_randomized_search.ipynb",
        ),
    ),
    title="Churn: a randomized search over a LightGBM pipeline",
    about="A ColumnTransformer (imputation, scaling, one-hot encoding) in front of an "
    "LGBMClassifier, tuned by RandomizedSearchCV with a small n_iter, on a customer table whose "
    "categorical columns have missing values.",
    cells=(
        code("""
            # parameters: override with `nb2prod package ... -p n_iter 8`
            n_iter = 5
            seed = 0
            """),
        code("""
            #| nb2prod: setup
            from typing import Literal, Optional

            import numpy as np
            import pandas as pd
            from lightgbm import LGBMClassifier
            from pydantic import BaseModel, Field
            from scipy.stats import randint, uniform
            from sklearn.compose import ColumnTransformer
            from sklearn.impute import SimpleImputer
            from sklearn.metrics import accuracy_score, roc_auc_score
            from sklearn.model_selection import RandomizedSearchCV, train_test_split
            from sklearn.pipeline import Pipeline
            from sklearn.preprocessing import OneHotEncoder, StandardScaler

            NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
            CATEGORICAL = ["contract", "payment_method", "internet"]
            """),
        code("""
            #| nb2prod: train
            rng = np.random.default_rng(seed)
            n = 1500
            customers = pd.DataFrame({
                "tenure_months": rng.integers(0, 73, n),
                "monthly_charges": np.round(rng.uniform(18, 120, n), 2),
                "support_calls": rng.poisson(1.5, n),
                "contract": rng.choice(["month-to-month", "one year", "two year"], n, p=[0.55, 0.25, 0.2]),
                "payment_method": rng.choice(["card", "bank transfer", "electronic check", "mailed check"], n),
                "internet": rng.choice(["DSL", "fiber", "none"], n, p=[0.35, 0.45, 0.2]),
            })
            for column in ["payment_method", "internet"]:
                customers.loc[rng.random(n) < 0.05, column] = np.nan
            risk = (
                -1.0 - 0.04 * customers["tenure_months"] + 0.02 * customers["monthly_charges"]
                + 0.35 * customers["support_calls"]
                + 1.2 * (customers["contract"] == "month-to-month")
                + 0.6 * (customers["payment_method"] == "electronic check")
            )
            customers["churn"] = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
            X = customers[NUMERIC + CATEGORICAL]
            y = customers["churn"]
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=0.2, random_state=seed, stratify=y
            )
            """),
        code("""
            #| nb2prod: train
            preprocessor = ColumnTransformer([
                ("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                                  ("scale", StandardScaler())]), NUMERIC),
                ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
            ])
            pipeline = Pipeline([("prep", preprocessor), ("clf", LGBMClassifier(random_state=seed))])
            param_distributions = {
                "clf__n_estimators": randint(30, 120),
                "clf__learning_rate": uniform(0.02, 0.2),
                "clf__num_leaves": randint(8, 48),
                "clf__min_child_samples": randint(10, 40),
            }
            search = RandomizedSearchCV(
                pipeline, param_distributions, n_iter=n_iter, cv=3, scoring="roc_auc",
                random_state=seed,
            )
            search.fit(X_train, y_train)
            search.best_params_
            """),
        code("""
            #| nb2prod: model
            model = search.best_estimator_
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                tenure_months: int = Field(ge=0, le=120)
                monthly_charges: float = Field(ge=0, le=500)
                support_calls: int = Field(ge=0, le=50)
                contract: Literal["month-to-month", "one year", "two year"]
                payment_method: Optional[Literal["card", "bank transfer", "electronic check", "mailed check"]] = None
                internet: Optional[Literal["DSL", "fiber", "none"]] = None


            class Output(BaseModel):
                churn: int = Field(description="1 if the customer is predicted to leave")
                probability: float = Field(ge=0, le=1)
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                frame = pd.DataFrame([i.model_dump() for i in inputs])
                return frame.astype({"payment_method": "str", "internet": "str"})
            """),
        code("""
            #| nb2prod: predict
            def predict(model, features):
                return model.predict_proba(features)[:, 1]
            """),
        code("""
            #| nb2prod: postprocess
            def postprocess(raw, inputs):
                return [Output(churn=int(p >= 0.5), probability=round(float(p), 6)) for p in raw]
            """),
        code("""
            #| nb2prod: evaluate
            proba = model.predict_proba(X_test)[:, 1]
            metrics = {
                "roc_auc": roc_auc_score(y_test, proba),
                "accuracy": accuracy_score(y_test, proba >= 0.5),
            }
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"tenure_months": 2, "monthly_charges": 95.5, "support_calls": 4,
                 "contract": "month-to-month", "payment_method": "electronic check", "internet": "fiber"},
                {"tenure_months": 60, "monthly_charges": 25.0, "support_calls": 0,
                 "contract": "two year", "payment_method": "card", "internet": "DSL"},
                {"tenure_months": 14, "monthly_charges": 60.0, "support_calls": 1,
                 "contract": "one year", "payment_method": None, "internet": None},
            ]
            """),
    ),
    tags={0: "parameters"},
    config="""
        name = "churn-lightgbm"
        version = "1.0.0"

        [gates]
        roc_auc = ">= 0.7"

        [evaluation]
        eval_x = "X_test"
        eval_y = "y_test"
        """,
    unseen=(
        {"tenure_months": 30, "monthly_charges": 70.2, "support_calls": 2, "contract": "one year",
         "payment_method": "bank transfer", "internet": "none"},
        {"tenure_months": 0, "monthly_charges": 110.0, "support_calls": 7,
         "contract": "month-to-month", "payment_method": None, "internet": "fiber"},
    ),
    # without explicit dtypes, a lone row with None in a categorical makes an object column of
    # None (not missing to the imputer); in a batch pandas infers str with NaN: the package names
    # it, and the fix is the explicit dtypes its hint suggests
    bug={
        "error": ["a single/batch difference", "`payment_method` = None (object) alone",
                  "nan (str) in a batch", "explicit dtypes (`pd.DataFrame(rows).astype({...})`)"],
        "buggy": "    return pd.DataFrame([i.model_dump() for i in inputs])",
        "fixed": "    frame = pd.DataFrame([i.model_dump() for i in inputs])\n"
                 '    return frame.astype({"payment_method": "str", "internet": "str"})',
    },
)  # fmt: skip


TORCH_THRESHOLD = Entry(
    name="torch_threshold",
    sources=(
        Source(
            "udacity/deep-learning-v2-pytorch",
            "2e849e9eca9f11287a65c39c0348939b1c3cb6a3",
            "intro-to-pytorch/Part 3 - Training Neural Networks (Solution).ipynb",
        ),
    ),
    title="Tumour screening: a PyTorch network with a 0.80 threshold",
    about="An `nn.Module` trained with a Dataset/DataLoader loop on scaled features; the service "
    "answers `malignant` when the predicted probability is at least 0.80.",
    cells=(
        code("""
            #| nb2prod: setup
            import numpy as np
            import torch
            from pydantic import BaseModel, Field
            from torch import nn
            from torch.utils.data import DataLoader, Dataset

            THRESHOLD = 0.80
            FEATURES = ["mean radius", "mean texture", "mean perimeter", "mean area",
                        "mean smoothness", "mean compactness", "mean concavity", "mean concave points"]


            class TumourNet(nn.Module):
                def __init__(self, n_features):
                    super().__init__()
                    self.layers = nn.Sequential(
                        nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)
                    )

                def forward(self, x):
                    return self.layers(x)
            """),
        code("""
            #| nb2prod: train
            from sklearn.datasets import load_breast_cancer
            from sklearn.model_selection import train_test_split
            from sklearn.preprocessing import StandardScaler

            torch.manual_seed(0)
            data = load_breast_cancer(as_frame=True)
            X = data.frame[FEATURES].to_numpy(dtype=np.float32)
            y = (data.target.to_numpy() == 0).astype(np.float32)  # 1 = malignant
            X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
            scaler = StandardScaler().fit(X_train)


            class TumourDataset(Dataset):
                def __init__(self, X, y):
                    self.X = torch.tensor(X, dtype=torch.float32)
                    self.y = torch.tensor(y, dtype=torch.float32).unsqueeze(1)

                def __len__(self):
                    return len(self.X)

                def __getitem__(self, idx):
                    return self.X[idx], self.y[idx]


            train_loader = DataLoader(TumourDataset(scaler.transform(X_train), y_train), batch_size=32,
                                      shuffle=True)
            """),
        code("""
            #| nb2prod: model
            model = TumourNet(len(FEATURES))
            criterion = nn.BCEWithLogitsLoss()
            optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
            """),
        code("""
            #| nb2prod: train
            epochs = 30
            for epoch in range(epochs):
                model.train()
                running_loss = 0.0
                for features, labels in train_loader:
                    optimizer.zero_grad()
                    loss = criterion(model(features), labels)
                    loss.backward()
                    optimizer.step()
                    running_loss += loss.item()
                if epoch % 10 == 9:
                    print(f"epoch {epoch + 1}: training loss {running_loss / len(train_loader):.4f}")
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                mean_radius: float = Field(ge=5, le=30)
                mean_texture: float = Field(ge=5, le=45)
                mean_perimeter: float = Field(ge=40, le=200)
                mean_area: float = Field(ge=100, le=2600)
                mean_smoothness: float = Field(ge=0.04, le=0.2)
                mean_compactness: float = Field(ge=0, le=0.4)
                mean_concavity: float = Field(ge=0, le=0.5)
                mean_concave_points: float = Field(ge=0, le=0.25)


            class Output(BaseModel):
                malignant: bool = Field(description="True when the probability is at least 0.80")
                probability: float = Field(ge=0, le=1)
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> np.ndarray:
                rows = [[i.mean_radius, i.mean_texture, i.mean_perimeter, i.mean_area, i.mean_smoothness,
                         i.mean_compactness, i.mean_concavity, i.mean_concave_points] for i in inputs]
                return scaler.transform(np.array(rows, dtype=np.float32))
            """),
        code("""
            #| nb2prod: predict
            def predict(model, features):
                model.eval()
                with torch.no_grad():
                    logits = model(torch.tensor(features, dtype=torch.float32))
                return torch.sigmoid(logits).squeeze(1).numpy()
            """),
        code("""
            #| nb2prod: postprocess
            def postprocess(raw, inputs):
                return [Output(malignant=bool(p >= THRESHOLD), probability=round(float(p), 6)) for p in raw]
            """),
        code("""
            #| nb2prod: evaluate
            eval_X = scaler.transform(X_val)
            eval_y = y_val.astype(int)
            probabilities = predict(model, eval_X)
            predicted = (probabilities >= THRESHOLD).astype(int)
            metrics = {
                "accuracy": float((predicted == eval_y).mean()),
                "recall": float(predicted[eval_y == 1].mean()),
            }
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"mean_radius": 17.99, "mean_texture": 10.38, "mean_perimeter": 122.8, "mean_area": 1001.0,
                 "mean_smoothness": 0.1184, "mean_compactness": 0.2776, "mean_concavity": 0.3001,
                 "mean_concave_points": 0.1471},
                {"mean_radius": 13.54, "mean_texture": 14.36, "mean_perimeter": 87.46, "mean_area": 566.3,
                 "mean_smoothness": 0.09779, "mean_compactness": 0.08129, "mean_concavity": 0.06664,
                 "mean_concave_points": 0.04781},
            ]
            """),
    ),
    config="""
        name = "tumour-torch"
        version = "1.0.0"

        [gates]
        accuracy = ">= 0.85"
        """,
    unseen=(
        {"mean_radius": 15.1, "mean_texture": 22.0, "mean_perimeter": 99.0, "mean_area": 710.0,
         "mean_smoothness": 0.101, "mean_compactness": 0.12, "mean_concavity": 0.11,
         "mean_concave_points": 0.07},
        {"mean_radius": 10.4, "mean_texture": 16.5, "mean_perimeter": 66.0, "mean_area": 330.0,
         "mean_smoothness": 0.09, "mean_compactness": 0.05, "mean_concavity": 0.02,
         "mean_concave_points": 0.015},
    ),
)  # fmt: skip


CALIBRATED_THRESHOLD = Entry(
    name="calibrated_threshold",
    sources=(
        Source(
            "ageron/handson-ml2",
            "d6a35a5c37b91de7df7bc4b7eb4985fdc7b26135",
            "03_classification.ipynb",
        ),
        Source(
            "scikit-learn/scikit-learn",
            "66269456070a47a55623a55598878457a0e7b519",
            "examples/calibration/plot_calibration.py",
        ),
    ),
    title="Fraud: a tuned random forest, isotonic calibration and an F1-optimal threshold",
    about="GridSearchCV over a random forest, `CalibratedClassifierCV(method='isotonic')` on top, "
    "and the threshold that maximises F1 on a validation split, chosen from the "
    "precision-recall curve and applied by the service.",
    cells=(
        code("""
            #| nb2prod: setup
            import numpy as np
            from pydantic import BaseModel, Field
            from sklearn.calibration import CalibratedClassifierCV
            from sklearn.ensemble import RandomForestClassifier
            from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score
            from sklearn.model_selection import GridSearchCV, train_test_split
            """),
        code("""
            #| nb2prod: train
            rng = np.random.default_rng(7)
            n = 2500
            amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
            hour = rng.integers(0, 24, n)
            account_age_days = rng.integers(1, 3650, n)
            previous_transactions = rng.poisson(20, n)
            foreign = rng.random(n) < 0.1
            logit = (-3.5 + 0.8 * np.log(amount) + 2.0 * foreign + 1.5 * (hour < 6)
                     - 0.0008 * account_age_days - 0.03 * previous_transactions)
            fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
            X = np.column_stack([amount, hour, account_age_days, previous_transactions, foreign])
            X_train, X_test, y_train, y_test = train_test_split(X, fraud, test_size=0.2, random_state=0, stratify=fraud)
            X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.25, random_state=0, stratify=y_train)
            fraud.mean()
            """),
        code("""
            #| nb2prod: train
            grid = GridSearchCV(
                RandomForestClassifier(random_state=0),
                {"n_estimators": [50], "max_depth": [4, 8], "min_samples_leaf": [1, 5]},
                cv=3, scoring="f1", n_jobs=-1,
            )
            grid.fit(X_fit, y_fit)
            grid.best_params_
            """),
        code("""
            #| nb2prod: model
            model = CalibratedClassifierCV(grid.best_estimator_, method="isotonic", cv=3)
            model.fit(X_fit, y_fit)
            """),
        code("""
            #| nb2prod: train
            precision, recall, thresholds = precision_recall_curve(y_val, model.predict_proba(X_val)[:, 1])
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            threshold = float(thresholds[np.argmax(f1[:-1])])
            threshold
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                amount: float = Field(gt=0, le=1900, description="Transaction amount in euros")
                hour: int = Field(ge=0, le=23)
                account_age_days: int = Field(ge=0, le=4800)
                previous_transactions: int = Field(ge=0, le=70)
                foreign: bool


            class Output(BaseModel):
                fraud: bool
                probability: float = Field(ge=0, le=1)
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> np.ndarray:
                return np.array([[i.amount, i.hour, i.account_age_days, i.previous_transactions,
                                  float(i.foreign)] for i in inputs])
            """),
        code("""
            #| nb2prod: predict
            def predict(model, features):
                return model.predict_proba(features)[:, 1]
            """),
        code("""
            #| nb2prod: postprocess
            def postprocess(raw, inputs):
                return [Output(fraud=bool(p >= threshold), probability=round(float(p), 6)) for p in raw]
            """),
        code("""
            #| nb2prod: evaluate
            proba = model.predict_proba(X_test)[:, 1]
            metrics = {
                "f1": f1_score(y_test, proba >= threshold),
                "roc_auc": roc_auc_score(y_test, proba),
            }
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"amount": 950.0, "hour": 3, "account_age_days": 20, "previous_transactions": 2, "foreign": True},
                {"amount": 12.5, "hour": 14, "account_age_days": 2400, "previous_transactions": 35, "foreign": False},
            ]
            """),
    ),
    config="""
        name = "fraud-calibrated"
        version = "1.0.0"

        [gates]
        f1 = ">= 0.3"
        roc_auc = ">= 0.65"
        """,
    unseen=(
        {"amount": 310.0, "hour": 5, "account_age_days": 90, "previous_transactions": 8,
         "foreign": True},
        {"amount": 44.9, "hour": 19, "account_age_days": 1500, "previous_transactions": 22,
         "foreign": False},
    ),
)  # fmt: skip


HOLT_WINTERS = Entry(
    name="holt_winters",
    sources=(
        Source(
            "statsmodels/statsmodels",
            "33b6bb04dc81668062103b642936515018963fad",
            "examples/notebooks/exponential_smoothing.ipynb",
        ),
    ),
    title="CO2 forecast: Holt-Winters from a date",
    about="statsmodels' ExponentialSmoothing (additive trend and season) on the monthly Mauna Loa "
    "CO2 series that ships with statsmodels; the service takes the month to forecast as a date.",
    cells=(
        code("""
            #| nb2prod: setup
            import datetime

            import numpy as np
            import pandas as pd
            import statsmodels.api as sm
            from pydantic import BaseModel, Field
            from statsmodels.tsa.holtwinters import ExponentialSmoothing
            """),
        code("""
            #| nb2prod: train
            co2 = sm.datasets.co2.load_pandas().data["co2"]
            monthly = co2.resample("MS").mean().ffill()
            train_series = monthly[:"1999-12-01"]
            test_series = monthly["2000-01-01":]
            last_month = train_series.index[-1]
            len(train_series), len(test_series)
            """),
        code("""
            #| nb2prod: model
            model = ExponentialSmoothing(
                train_series, trend="add", seasonal="add", seasonal_periods=12
            ).fit()
            """),
        code("""
            #| nb2prod: skip
            ax = monthly.plot(figsize=(10, 4))
            model.forecast(36).plot(ax=ax)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                month: datetime.date = Field(
                    ge=datetime.date(2000, 1, 1), le=datetime.date(2009, 12, 31),
                    description="Any day of the month to forecast",
                )


            class Output(BaseModel):
                co2_ppm: float = Field(description="Forecast monthly mean CO2 in ppm")
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> list[int]:
                return [(i.month.year - last_month.year) * 12 + i.month.month - last_month.month
                        for i in inputs]
            """),
        code("""
            #| nb2prod: predict
            def predict(model, steps):
                forecast = model.forecast(max(steps))
                return [float(forecast.iloc[s - 1]) for s in steps]
            """),
        code("""
            #| nb2prod: evaluate
            eval_X = [{"month": d.date()} for d in test_series.index]
            eval_y = test_series.to_numpy()
            forecast = model.forecast(len(test_series))
            metrics = {
                "mae": float(np.mean(np.abs(forecast.to_numpy() - eval_y))),
                "mape": float(np.mean(np.abs(forecast.to_numpy() - eval_y) / eval_y)),
            }
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [{"month": "2000-06-01"}, {"month": "2001-01-15"}, {"month": "2004-12-01"}]
            """),
    ),
    config="""
        name = "co2-holt-winters"
        version = "1.0.0"

        [gates]
        mape = "<= 0.01"
        """,
    unseen=({"month": "2002-03-10"}, {"month": "2000-11-30"}, {"month": "2008-07-01"}),
)


ADULT_COLUMN_TRANSFORMER = Entry(
    name="adult_column_transformer",
    sources=(
        Source(
            "INRIA/scikit-learn-mooc",
            "08cabad99f4bdd641f0640ad36d169842ed3baac",
            "notebooks/03_categorical_pipeline_column_transformer.ipynb",
        ),
    ),
    title="Income: a ColumnTransformer with missing categoricals",
    about="An adult-census-like table (generated) whose categorical columns have missing values: "
    "`SimpleImputer(strategy='constant')` and a one-hot encoder for them, scaling for the numbers, "
    "a logistic regression, all in one Pipeline.",
    cells=(
        code("""
            #| nb2prod: setup
            from typing import Literal, Optional

            import numpy as np
            import pandas as pd
            from pydantic import BaseModel, Field
            """),
        code("""
            #| nb2prod: train
            from sklearn.model_selection import train_test_split

            rng = np.random.default_rng(1994)
            n = 3000
            adult = pd.DataFrame({
                "age": rng.integers(17, 91, n),
                "education_num": rng.integers(1, 17, n),
                "hours_per_week": rng.integers(1, 100, n),
                "capital_gain": np.where(rng.random(n) < 0.08, rng.integers(1000, 99999, n), 0),
                "workclass": rng.choice(["Private", "Self-emp", "Government", "Without-pay"], n, p=[0.7, 0.12, 0.15, 0.03]),
                "occupation": rng.choice(["Exec", "Craft", "Sales", "Service", "Clerical"], n),
                "marital_status": rng.choice(["Married", "Never-married", "Divorced"], n, p=[0.47, 0.33, 0.2]),
            })
            adult.loc[rng.random(n) < 0.06, "workclass"] = np.nan
            adult.loc[rng.random(n) < 0.06, "occupation"] = np.nan
            score = (-6 + 0.04 * adult["age"] + 0.3 * adult["education_num"] + 0.02 * adult["hours_per_week"]
                     + 1.3 * (adult["marital_status"] == "Married") + 0.8 * (adult["occupation"] == "Exec")
                     + 2.0 * (adult["capital_gain"] > 5000))
            target = np.where(rng.random(n) < 1 / (1 + np.exp(-score)), ">50K", "<=50K")
            data_train, data_test, target_train, target_test = train_test_split(
                adult, target, test_size=0.25, random_state=42
            )
            """),
        code("""
            #| nb2prod: model
            from sklearn.compose import ColumnTransformer
            from sklearn.impute import SimpleImputer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import OneHotEncoder, StandardScaler

            numerical_columns = ["age", "education_num", "hours_per_week", "capital_gain"]
            categorical_columns = ["workclass", "occupation", "marital_status"]
            categorical_preprocessor = make_pipeline(
                SimpleImputer(strategy="constant", fill_value="missing"),
                OneHotEncoder(handle_unknown="ignore"),
            )
            preprocessor = ColumnTransformer([
                ("one-hot-encoder", categorical_preprocessor, categorical_columns),
                ("standard_scaler", StandardScaler(), numerical_columns),
            ])
            model = make_pipeline(preprocessor, LogisticRegression(max_iter=500))
            model.fit(data_train, target_train)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                age: int = Field(ge=17, le=100)
                education_num: int = Field(ge=1, le=16)
                hours_per_week: int = Field(ge=1, le=99)
                capital_gain: int = Field(ge=0, le=99999)
                workclass: Optional[Literal["Private", "Self-emp", "Government", "Without-pay"]] = None
                occupation: Optional[Literal["Exec", "Craft", "Sales", "Service", "Clerical"]] = None
                marital_status: Literal["Married", "Never-married", "Divorced"]


            class Output(BaseModel):
                income: Literal["<=50K", ">50K"]
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                return pd.DataFrame([i.model_dump() for i in inputs])
            """),
        code("""
            #| nb2prod: evaluate
            metrics = {"accuracy": model.score(data_test, target_test)}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"age": 39, "education_num": 13, "hours_per_week": 40, "capital_gain": 2174,
                 "workclass": "Government", "occupation": "Clerical", "marital_status": "Never-married"},
                {"age": 50, "education_num": 13, "hours_per_week": 13, "capital_gain": 0,
                 "workclass": "Self-emp", "occupation": "Exec", "marital_status": "Married"},
                {"age": 28, "education_num": 9, "hours_per_week": 40, "capital_gain": 0,
                 "workclass": None, "occupation": None, "marital_status": "Divorced"},
            ]
            """),
    ),
    config="""
        name = "adult-income"
        version = "1.0.0"

        [gates]
        accuracy = ">= 0.7"

        [evaluation]
        eval_x = "data_test"
        eval_y = "target_test"
        """,
    unseen=(
        {"age": 45, "education_num": 14, "hours_per_week": 50, "capital_gain": 15024,
         "workclass": "Private", "occupation": "Exec", "marital_status": "Married"},
        {"age": 23, "education_num": 10, "hours_per_week": 20, "capital_gain": 0,
         "workclass": "Private", "occupation": None, "marital_status": "Never-married"},
    ),
)  # fmt: skip


XGBOOST_REGRESSOR = Entry(
    name="xgboost_regressor",
    sources=(
        Source(
            "bellovai/Housing_Prices_Competition",
            "2d0ee3315d04a321bd85bdd7b14caabf8aad7c37",
            "xgboost.ipynb",
        ),
    ),
    title="Diabetes progression: an XGBRegressor",
    about="An `XGBRegressor` with a handful of parameters on scikit-learn's bundled diabetes data "
    "(unscaled), fed a DataFrame with the training column names.",
    cells=(
        code("""
            #| nb2prod: setup
            import pandas as pd
            from pydantic import BaseModel, Field
            from xgboost import XGBRegressor
            """),
        code("""
            #| nb2prod: train
            from sklearn.datasets import load_diabetes
            from sklearn.model_selection import train_test_split

            diabetes = load_diabetes(as_frame=True, scaled=False)
            X = diabetes.data
            y = diabetes.target
            X_train, X_valid, y_train, y_valid = train_test_split(X, y, train_size=0.8, random_state=0)
            """),
        code("""
            #| nb2prod: model
            model = XGBRegressor(n_estimators=300, learning_rate=0.03, max_depth=3, random_state=0)
            model.fit(X_train, y_train)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                age: float = Field(ge=18, le=90)
                sex: float = Field(ge=1, le=2, description="1 or 2, as in the source data")
                bmi: float = Field(ge=15, le=50)
                bp: float = Field(ge=50, le=150, description="Average blood pressure")
                s1: float = Field(ge=90, le=320)
                s2: float = Field(ge=40, le=250)
                s3: float = Field(ge=20, le=100)
                s4: float = Field(ge=1, le=10)
                s5: float = Field(ge=3, le=7)
                s6: float = Field(ge=55, le=130)


            class Output(BaseModel):
                progression: float = Field(description="Disease progression one year after baseline")
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                return pd.DataFrame([i.model_dump() for i in inputs], columns=X_train.columns)
            """),
        code("""
            #| nb2prod: evaluate
            from sklearn.metrics import mean_absolute_error, r2_score

            predictions = model.predict(X_valid)
            metrics = {"mae": mean_absolute_error(y_valid, predictions), "r2": r2_score(y_valid, predictions)}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2, "s3": 38, "s4": 4,
                 "s5": 4.8598, "s6": 87},
                {"age": 48, "sex": 1, "bmi": 21.6, "bp": 87, "s1": 183, "s2": 103.2, "s3": 70, "s4": 3,
                 "s5": 3.8918, "s6": 69},
            ]
            """),
    ),
    config="""
        name = "diabetes-xgboost"
        version = "1.0.0"

        [gates]
        r2 = ">= 0.2"

        [evaluation]
        eval_x = "X_valid"
        eval_y = "y_valid"
        """,
    unseen=(
        {"age": 35, "sex": 1, "bmi": 27.5, "bp": 95, "s1": 200, "s2": 120, "s3": 50, "s4": 4,
         "s5": 4.5, "s6": 90},
        {"age": 66, "sex": 2, "bmi": 35.0, "bp": 115, "s1": 170, "s2": 100, "s3": 35, "s4": 5,
         "s5": 5.2, "s6": 105},
    ),
)  # fmt: skip


TEXT_VECTORIZER = Entry(
    name="text_vectorizer",
    sources=(
        Source(
            "amueller/scipy-2016-sklearn",
            "38caa5ac44c9b0ba34821432846a15f4f112ad2d",
            "notebooks/12 Case Study - SMS Spam Detection.ipynb",
        ),
    ),
    title="SMS spam: a TF-IDF vectoriser fitted in its own cell",
    about="A `TfidfVectorizer` fitted in a training cell (fitted state the service reads) and a "
    "naive Bayes classifier on its output; messages are generated with a fixed seed.",
    cells=(
        code("""
            #| nb2prod: setup
            import random
            from typing import Literal

            from pydantic import BaseModel, Field
            """),
        code("""
            #| nb2prod: train
            from sklearn.model_selection import train_test_split

            generator = random.Random(2016)
            ham_words = "ok see you at home later tonight dinner thanks love call me when free meeting lunch".split()
            spam_words = "free win prize cash claim now urgent txt reply offer winner mobile award".split()
            shared = "you the to a your for is on".split()


            def message(words):
                return " ".join(generator.choice(words + shared) for _ in range(generator.randint(4, 14)))


            labels = ["spam" if generator.random() < 0.15 else "ham" for _ in range(1500)]
            texts = [message(spam_words if label == "spam" else ham_words) for label in labels]
            text_train, text_test, y_train, y_test = train_test_split(texts, labels, random_state=42, stratify=labels)
            """),
        code("""
            #| nb2prod: train
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
            X_train = vectorizer.fit_transform(text_train)
            X_test = vectorizer.transform(text_test)
            len(vectorizer.vocabulary_)
            """),
        code("""
            #| nb2prod: model name=clf
            from sklearn.naive_bayes import MultinomialNB

            clf = MultinomialNB(alpha=0.1)
            clf.fit(X_train, y_train)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                text: str = Field(min_length=1, max_length=1000, description="The SMS message")


            class Output(BaseModel):
                label: Literal["ham", "spam"]
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]):
                return vectorizer.transform([i.text for i in inputs])
            """),
        code("""
            #| nb2prod: evaluate
            metrics = {"accuracy": clf.score(X_test, y_test)}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"text": "urgent you win a free prize txt claim now"},
                {"text": "see you at home for dinner tonight love"},
            ]
            """),
    ),
    config="""
        name = "sms-tfidf"
        version = "1.0.0"

        [gates]
        accuracy = ">= 0.9"

        [evaluation]
        eval_x = "X_test"
        eval_y = "y_test"
        """,
    unseen=(
        {"text": "claim your cash award now reply to this mobile offer"},
        {"text": "thanks for lunch, call me later when you are free"},
        {"text": "meeting moved, see the notes"},
    ),
)


STATSMODELS_OLS = Entry(
    name="statsmodels_ols",
    sources=(
        Source(
            "statsmodels/statsmodels",
            "cdb82b06d053b1cc4b90eb73483f6af38219434c",
            "examples/notebooks/formulas.ipynb",
        ),
    ),
    title="Affairs: an OLS fitted from a formula",
    about="`smf.ols` with an R-style formula, a categorical term `C(religious)`, on the `fair` "
    "data set that ships with statsmodels; the service predicts from a DataFrame of Input rows.",
    cells=(
        code("""
            #| nb2prod: setup
            import pandas as pd
            import statsmodels.api as sm
            import statsmodels.formula.api as smf
            from pydantic import BaseModel, Field
            """),
        code("""
            #| nb2prod: train
            fair = sm.datasets.fair.load_pandas().data
            train_df = fair.sample(frac=0.8, random_state=0)
            test_df = fair.drop(train_df.index)
            """),
        code("""
            #| nb2prod: model
            model = smf.ols("affairs ~ rate_marriage + age + yrs_married + children + C(religious)", data=train_df).fit()
            print(model.summary())
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                rate_marriage: float = Field(ge=1, le=5, description="1 = very poor, 5 = very good")
                age: float = Field(ge=17, le=60)
                yrs_married: float = Field(ge=0, le=40)
                children: float = Field(ge=0, le=10)
                religious: int = Field(ge=1, le=4, description="1 = not, 4 = strongly")


            class Output(BaseModel):
                affairs: float
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> pd.DataFrame:
                return pd.DataFrame([i.model_dump() for i in inputs])
            """),
        code("""
            #| nb2prod: evaluate
            residuals = test_df["affairs"] - model.predict(test_df)
            metrics = {"rmse": float((residuals ** 2).mean() ** 0.5), "r2_train": float(model.rsquared)}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [
                {"rate_marriage": 3, "age": 32, "yrs_married": 9, "children": 3, "religious": 3},
                {"rate_marriage": 5, "age": 22, "yrs_married": 2.5, "children": 0, "religious": 2},
            ]
            """),
    ),
    config="""
        name = "fair-ols"
        version = "1.0.0"

        [gates]
        rmse = "<= 3"
        """,
    unseen=(
        {"rate_marriage": 2, "age": 42, "yrs_married": 16.5, "children": 2, "religious": 1},
        {"rate_marriage": 4, "age": 27, "yrs_married": 6, "children": 1, "religious": 4},
    ),
)


MULTI_OUTPUT = Entry(
    name="multi_output",
    sources=(
        Source("klee0kai/scikit-learn", "ce8a988bcdfe0d10f65b6c7c8049138b047d5bb7", "multiout_regression.py"),
    ),
    title="Linnerud: a MultiOutputRegressor",
    about="`MultiOutputRegressor(GradientBoostingRegressor())` predicting three body measurements "
    "from three exercises (scikit-learn's bundled linnerud data); the Output is one `list[float]` "
    "field, with no postprocess cell.",
    cells=(
        code("""
            #| nb2prod: setup
            import numpy as np
            from pydantic import BaseModel, Field
            """),
        code("""
            #| nb2prod: train
            from sklearn.datasets import load_linnerud

            linnerud = load_linnerud()
            X, Y = linnerud.data, linnerud.target
            train_X, eval_X, train_Y, eval_Y = X[:15], X[15:], Y[:15], Y[15:]
            linnerud.feature_names, linnerud.target_names
            """),
        code("""
            #| nb2prod: model
            from sklearn.ensemble import GradientBoostingRegressor
            from sklearn.multioutput import MultiOutputRegressor

            model = MultiOutputRegressor(GradientBoostingRegressor(n_estimators=50, max_depth=2, random_state=0))
            model.fit(train_X, train_Y)
            """),
        code("""
            #| nb2prod: contract
            class Input(BaseModel):
                chins: float = Field(ge=0, le=30)
                situps: float = Field(ge=0, le=300)
                jumps: float = Field(ge=0, le=300)


            class Output(BaseModel):
                measurements: list[float] = Field(description="Weight, waist and pulse")
            """),
        code("""
            #| nb2prod: preprocess
            def preprocess(inputs: list[Input]) -> np.ndarray:
                return np.array([[i.chins, i.situps, i.jumps] for i in inputs])
            """),
        code("""
            #| nb2prod: evaluate
            from sklearn.metrics import mean_absolute_error

            metrics = {"mae": mean_absolute_error(eval_Y, model.predict(eval_X))}
            metrics
            """),
        code("""
            #| nb2prod: examples
            examples = [{"chins": 5, "situps": 162, "jumps": 60}, {"chins": 12, "situps": 210, "jumps": 120}]
            """),
    ),
    config="""
        name = "linnerud-multi"
        version = "1.0.0"

        [gates]
        mae = "<= 30"

        [evaluation]
        eval_x = "eval_X"
        eval_y = "eval_Y"
        """,
    unseen=({"chins": 8, "situps": 100, "jumps": 45}, {"chins": 15, "situps": 250, "jumps": 200}),
)


# the five patterns of the earlier corpus (docs/your-notebook.md), then the six of issue #22
CORPUS: tuple[Entry, ...] = (
    TEXT_VECTORIZER,
    ADULT_COLUMN_TRANSFORMER,
    XGBOOST_REGRESSOR,
    STATSMODELS_OLS,
    MULTI_OUTPUT,
    TITANIC,
    HELPER_MODULE,
    LIGHTGBM_SEARCH,
    TORCH_THRESHOLD,
    CALIBRATED_THRESHOLD,
    HOLT_WINTERS,
)


def notebook(entry: Entry) -> nbformat.NotebookNode:
    cited = " and ".join(s.url for s in entry.sources)
    first = (
        f"# {entry.title}\n\nPattern seen in {cited}\n\n{entry.about}\n\n"
        "Written for nb2prod's test corpus (tests/corpus/make_corpus.py); no code of the source "
        "is reproduced."
    )
    cells = [new_markdown_cell(first)]
    index = 0
    for text in entry.cells:
        if text.startswith("MD "):
            cells.append(new_markdown_cell(text[3:]))
            continue
        cell = new_code_cell(text)
        if index in entry.tags:
            cell.metadata["tags"] = [entry.tags[index]]
        cells.append(cell)
        index += 1
    for number, cell in enumerate(cells):
        cell.id = f"{entry.name[:50]}-{number}"  # stable ids: the files are reviewed as diffs
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nb2prod_test"] = {"unseen": list(entry.unseen)}
    if entry.bug:
        nb.metadata["nb2prod_test"]["bug"] = entry.bug
    return nb


def write(entry: Entry, root: Path = HERE) -> Path:
    folder = root / entry.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    nbformat.write(notebook(entry), folder / f"{entry.name}.ipynb")
    (folder / "nb2prod.toml").write_text(textwrap.dedent(entry.config).lstrip(), encoding="utf-8")
    for name, text in entry.files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def main() -> None:
    for entry in CORPUS:
        print(write(entry).relative_to(HERE.parent.parent))


if __name__ == "__main__":
    main()
