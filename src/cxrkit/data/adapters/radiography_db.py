"""COVID-19 Radiography Database (Chowdhury et al. 2020, Rahman et al. 2021; Kaggle).

Layout as published: ``ROOT/{COVID,Normal,Lung_Opacity,Viral Pneumonia}/images/*.png`` (any subset of the
class folders), optional ``masks/`` beside each ``images/`` (kept as ``mask_path``), and the
``<class>.metadata.xlsx`` sheets (``FILE NAME``, ``FORMAT``, ``SIZE``, ``URL``) at the root or in the class folder.

``source`` is the institution or collection an image came from, so that leave-source-out folds never put
one hospital on both sides: with the metadata sheets it is a short name of the row's URL (BIMCV -> ``bimcv``;
RSNA -> ``nih-chestxray14``, since the RSNA challenge images are ChestX-ray14 images; Kermany's Kaggle set ->
``kaggle-pneumonia``; Cohen's collection -> ``covid-chestxray``, the names the other adapters use for those
collections). Without the sheets it is ``covid19-radiography-db/<class folder>``: each class folder was
assembled from different institutions (COVID mostly BIMCV, Spain; Normal RSNA/NIH, USA), so a folder is the
finest source the files reveal, and a model validated within one folder mix learns the site, not the disease.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace
from cxrkit.data.adapters.base import warn_no_patients
from cxrkit.data.table import CxrTable
from cxrkit.io.decode import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

DATASET = "covid19-radiography-db"
# Folder name (lower case, '_' for ' ') -> harmonised class name.
FOLDER_CLASSES = {
    "covid": "COVID-19",
    "normal": "NORMAL",
    "lung_opacity": "Lung Opacity",
    "viral_pneumonia": "PNEUMONIA",
}
CLASS_ORDER = ("NORMAL", "PNEUMONIA", "COVID-19", "Lung Opacity")
# Folders whose images all predate COVID-19: RSNA (ChestX-ray14, 1992-2015) and Kermany (2018).
PRE_COVID = {"normal", "lung_opacity", "viral_pneumonia"}
# URL fragment -> source name (the first match wins).
URL_SOURCES = (
    ("bimcv", "bimcv"),
    ("rsna", "nih-chestxray14"),
    ("chest-xray-pneumonia", "kaggle-pneumonia"),
    ("ieee8023", "covid-chestxray"),
    ("ml-workgroup", "hannover"),
    ("covid-cxnet", "covid-cxnet"),
    ("sirm", "sirm"),
    ("eurorad", "eurorad"),
    ("agchung", "figure1-actualmed"),
)
KERMANY = "kaggle-pneumonia"


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def _class_dirs(path: Path) -> list[tuple[Path, Path]]:
    """(class folder, its images/ folder) for each known class folder under ``path``."""
    if not path.is_dir():
        return []
    out = []
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        images = d / "images"
        if _key(d.name) in FOLDER_CLASSES and images.is_dir():
            out.append((d, images))
    return out


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def url_source(url: str) -> str | None:
    """A short source name for a metadata URL (``None`` for an empty cell)."""
    if not isinstance(url, str) or not url.strip():
        return None
    lowered = url.lower()
    for fragment, name in URL_SOURCES:
        if fragment in lowered:
            return name
    host = urlparse(url.strip() if "://" in url else f"http://{url.strip()}").netloc
    return host.removeprefix("www.") or url.strip()


def read_metadata(path: Path, class_dir: Path) -> pd.Series | None:
    """File stem (lower case) -> URL from ``<class>.metadata.xlsx`` at the root or in the class folder."""
    wanted = _key(class_dir.name)
    sheets = [p for folder in (path, class_dir) for p in folder.glob("*.metadata.xlsx")]
    sheet = next((p for p in sheets if _key(p.name.removesuffix(".metadata.xlsx")) == wanted), None)
    if sheet is None:
        return None
    try:
        df = pd.read_excel(sheet, engine="openpyxl", dtype=str)
    except (OSError, ValueError, KeyError) as err:
        raise DataFormatError(f"{sheet}: not a readable .xlsx sheet ({err}). Re-download it or remove it.") from err
    cols = {c.strip().lower(): c for c in df.columns}
    name_col = cols.get("file name") or cols.get("filename")
    url_col = cols.get("url")
    if name_col is None or url_col is None:
        raise DataFormatError(f"{sheet}: expected columns 'FILE NAME' and 'URL', found {list(df.columns)}.")
    # 'COVID-1' or 'COVID-1.png'; the Normal sheet writes 'NORMAL-1' for Normal-1.png: match case-insensitively.
    stems = df[name_col].astype(str).str.strip().str.replace(r"\.(?:png|jpe?g)$", "", case=False, regex=True)
    stems = stems.str.lower()
    return pd.Series(df[url_col].to_numpy(), index=stems.to_numpy())


class RadiographyDbAdapter:
    name = "radiography"
    looks_like = "ROOT/{COVID,Normal,Lung_Opacity,Viral Pneumonia}/images/*.png (COVID-19 Radiography Database)"
    # where to download it: https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database

    def detect(self, path: Path) -> bool:
        return any(_images(images) for _, images in _class_dirs(path))

    def load(self, path: Path, **options) -> CxrTable:
        pairs = [(d, images, _images(images)) for d, images in _class_dirs(path)]
        pairs = [p for p in pairs if p[2]]
        if not pairs:
            raise DataFormatError(f"{path}: no images in {{COVID,Normal,Lung_Opacity,Viral Pneumonia}}/images/.")
        space = LabelSpace.exclusive_from(
            [c for c in CLASS_ORDER if c in {FOLDER_CLASSES[_key(d.name)] for d, _, _ in pairs}]
        )
        frames, notes = [], []
        for class_dir, images_dir, files in pairs:
            frames.append(self._folder_frame(path, class_dir, images_dir, files, notes, options.get("source")))
        frame = pd.concat(frames, ignore_index=True)
        labels = pd.get_dummies(frame.pop("label")).reindex(columns=list(space.classes), fill_value=False)
        notes.append(warn_no_patients(DATASET))
        return CxrTable(frame, labels.to_numpy(dtype="float32"), space, notes)

    @staticmethod
    def _folder_frame(
        root: Path, class_dir: Path, images_dir: Path, files: list[Path], notes: list[str], source: str | None
    ) -> pd.DataFrame:
        key = _key(class_dir.name)
        frame = pd.DataFrame({"path": [str(p.resolve()) for p in files], "label": FOLDER_CLASSES[key]})
        masks_dir = class_dir / "masks"
        if masks_dir.is_dir():
            masks = [masks_dir / p.name for p in files]
            frame["mask_path"] = pd.Series([str(m.resolve()) if m.is_file() else pd.NA for m in masks], dtype="string")
        urls = read_metadata(root, class_dir)
        stems = pd.Series([p.stem.lower() for p in files])
        if urls is not None:
            frame["source_url"] = stems.map(urls[~urls.index.duplicated()]).astype("string")
            n_missing = int(frame["source_url"].isna().sum())
            if n_missing:
                notes.append(f"{class_dir.name}: {n_missing} images not in its metadata sheet; source is the folder.")
            frame["source"] = frame["source_url"].map(url_source, na_action="ignore")
        else:
            frame["source"] = pd.NA
        frame["source"] = frame["source"].fillna(f"{DATASET}/{class_dir.name}")
        if source:
            frame["source"] = source
        frame["dataset"] = DATASET
        # Kermany's images (Viral Pneumonia, and the pediatric share of Normal) are of children.
        kermany = frame["source"].eq(KERMANY) | (key == "viral_pneumonia")
        frame["age_group"] = pd.Series(pd.NA, index=frame.index, dtype="string").mask(kermany, "child")
        frame["pre_covid"] = key in PRE_COVID
        return frame
