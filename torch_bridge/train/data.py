"""Datasets and transforms for training, with nothing downloaded: everything reads local files.

Classification
    ``ImageFolder(root)``   ``root/<class>/*.png|jpg|...`` (classes sorted by name), read with PIL.
    ``CIFARBinary(root)``   the CIFAR-10 binary format (``data_batch_{1..5}.bin`` / ``test_batch.bin``:
                            1 label byte + 3072 pixel bytes, R then G then B planes, per record) and
                            CIFAR-100's (``train.bin`` / ``test.bin``: coarse + fine label bytes + 3072).
Joint upsampling
    ``UpsampleArrays``      paired high-resolution arrays ``guidance`` (N, C, H, W) or (N, H, W, C) and
                            ``target`` (N, H, W), (N, 1, H, W), ... in one ``.npz`` (keys ``guidance``,
                            ``target``) or two ``.npy`` files (``<split>_guidance.npy``,
                            ``<split>_target.npy``); the low-resolution input is made by downsampling
                            the target by the model's factor.

The base datasets give uint8 ``(3, H, W)`` tensors; ``Augmented`` applies a transform whose
randomness comes from a generator seeded by (seed, epoch, sample index), so the augmentation of a
sample does not depend on the number of processes, loader workers, or where a run was resumed.
Transforms are torch ops on tensors (torchvision is not used): resize (antialiased bilinear),
random / center crop, random resized crop, horizontal flip, normalize.

``open_split(data, split)`` finds the split in a data path (see ``locate``), ``build_dataset``
wraps it with the transforms for training or evaluation.
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "CIFARBinary", "UpsampleArrays", "Augmented", "ClassifyTransform",
           "DataSpec", "detect_format", "locate", "open_split", "build_dataset", "sample_generator",
           "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_RECORD = 1 + 3072
CIFAR100_RECORD = 2 + 3072


# ----------------------------------------------------------------------------------------------
# base datasets


class ImageFolder(Dataset):
    """``root/<class>/<image>`` -> (uint8 (3, H, W) RGB tensor, class index); classes sorted by name.

    Raises ``FileNotFoundError`` for a missing root, ``ValueError`` for a root without class
    folders or with a class folder that holds no image.
    """

    def __init__(self, root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder {root!r} does not exist (expected root/<class>/<image>)")
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not self.classes:
            raise ValueError(f"image folder {root!r} has no class sub-folders (expected root/<class>/<image>)")
        exts = tuple(e.lower() for e in extensions)
        self.samples: List[Tuple[str, int]] = []
        for idx, name in enumerate(self.classes):
            d = os.path.join(root, name)
            files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(d, followlinks=True) for f in fs
                           if f.lower().endswith(exts) and not f.startswith("."))
            if not files:
                raise ValueError(f"class folder {d!r} holds no image ({', '.join(exts)})")
            self.samples.extend((f, idx) for f in files)
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: str) -> Tensor:
        from PIL import Image

        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL's errors do not always name the file
            raise ValueError(f"cannot read image {path!r}: {e}") from e
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        path, label = self.samples[i]
        return self.load(path), label


def _cifar_files(root: str, train: bool) -> Tuple[List[str], int]:
    """(files, record size) of a CIFAR-10 or CIFAR-100 binary directory."""
    for d in (root, os.path.join(root, "cifar-10-batches-bin"), os.path.join(root, "cifar-100-binary")):
        c10 = sorted(glob.glob(os.path.join(d, "data_batch_*.bin"))) if train else \
            [f for f in [os.path.join(d, "test_batch.bin")] if os.path.isfile(f)]
        if c10:
            return c10, CIFAR10_RECORD
        c100 = os.path.join(d, "train.bin" if train else "test.bin")
        if os.path.isfile(c100):
            return [c100], CIFAR100_RECORD
    return [], 0


class CIFARBinary(Dataset):
    """CIFAR-10 / CIFAR-100 binary batches -> (uint8 (3, 32, 32) tensor, label).

    ``root`` holds ``data_batch_*.bin`` and ``test_batch.bin`` (CIFAR-10; also found in
    ``root/cifar-10-batches-bin``) or ``train.bin`` and ``test.bin`` (CIFAR-100, fine labels; also
    in ``root/cifar-100-binary``). The whole split is read into memory (50,000 images: 150 MB).
    Raises ``FileNotFoundError`` without the files, ``ValueError`` for a truncated file or bad labels.
    """

    def __init__(self, root: str, train: bool = True):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"CIFAR directory {root!r} does not exist")
        files, rec = _cifar_files(root, train)
        if not files:
            want = "data_batch_*.bin (CIFAR-10) or train.bin (CIFAR-100)" if train else \
                "test_batch.bin (CIFAR-10) or test.bin (CIFAR-100)"
            raise FileNotFoundError(f"no CIFAR binary {'training' if train else 'test'} files in {root!r}: expected {want}")
        self.files = files
        self.num_classes = 10 if rec == CIFAR10_RECORD else 100
        images, labels = [], []
        for f in files:
            raw = np.fromfile(f, dtype=np.uint8)
            if raw.size == 0 or raw.size % rec:
                raise ValueError(f"CIFAR file {f!r} is truncated or not in the binary format: {raw.size} bytes "
                                 f"is not a whole number of {rec}-byte records")
            raw = raw.reshape(-1, rec)
            labels.append(raw[:, rec - 3073].astype(np.int64))  # CIFAR-100: the fine label (second byte)
            images.append(raw[:, rec - 3072:].reshape(-1, 3, 32, 32))
        self.labels = torch.from_numpy(np.concatenate(labels))
        self.images = torch.from_numpy(np.concatenate(images))
        bad = (self.labels >= self.num_classes).nonzero()
        if len(bad):
            raise ValueError(f"CIFAR files {files} hold label {int(self.labels[bad[0, 0]])} >= {self.num_classes} "
                             f"(record {int(bad[0, 0])}): not CIFAR-{self.num_classes} binary data")
        self.classes = [str(i) for i in range(self.num_classes)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])


def _chw(a: np.ndarray, what: str, path: str) -> np.ndarray:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) with C <= 4 -> (N, C, H, W) (a view)."""
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4:
        if a.shape[1] > 4 and a.shape[-1] <= 4:
            return a.transpose(0, 3, 1, 2)
        return a
    raise ValueError(f"{what} in {path!r} must be (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {a.shape}")


class UpsampleArrays(Dataset):
    """Paired high-resolution ``guidance`` and ``target`` arrays -> (guidance, target) float tensors.

    ``path``: an ``.npz`` with arrays ``guidance`` and ``target``, or a pair of ``.npy`` files given
    as ``(guidance_path, target_path)`` (memory-mapped). uint8 guidance is scaled to [0, 1].
    Raises ``ValueError`` when the two do not pair up (count or height/width differ).
    """

    def __init__(self, path):
        if isinstance(path, (tuple, list)):
            gpath, tpath = path
            for p in (gpath, tpath):
                if not os.path.isfile(p):
                    raise FileNotFoundError(f"array file {p!r} does not exist")
            g, t = np.load(gpath, mmap_mode="r"), np.load(tpath, mmap_mode="r")
            where = f"{gpath} + {tpath}"
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"array file {path!r} does not exist")
            with np.load(path) as z:
                missing = [k for k in ("guidance", "target") if k not in z.files]
                if missing:
                    raise ValueError(f"{path!r} lacks array(s) {missing}; it has {z.files} "
                                     f"(expected 'guidance' and 'target')")
                g, t = z["guidance"], z["target"]
            where = path
        self.path = where
        self.guidance, self.target = _chw(g, "guidance", where), _chw(t, "target", where)
        if len(self.guidance) != len(self.target):
            raise ValueError(f"mismatched pairs in {where}: {len(self.guidance)} guidance images but "
                             f"{len(self.target)} targets")
        if self.guidance.shape[2:] != self.target.shape[2:]:
            raise ValueError(f"mismatched pair shapes in {where}: guidance {tuple(g.shape)} vs target "
                             f"{tuple(t.shape)}; both must be high-resolution, of the same height and width")
        if len(self.target) == 0:
            raise ValueError(f"{where} holds no samples")
        self.guide_channels = self.guidance.shape[1]
        self.channels = self.target.shape[1]
        self._g_scale = 1 / 255 if self.guidance.dtype == np.uint8 else None

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:
        g = torch.from_numpy(np.array(self.guidance[i], dtype=np.float32))
        if self._g_scale is not None:
            g = g * self._g_scale
        return g, torch.from_numpy(np.array(self.target[i], dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# transforms (torch ops on (C, H, W) tensors; randomness from an explicit generator)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's augmentation: a function of (seed, epoch, index) only."""
    mix = (seed * 0x9E3779B97F4A7C15 + epoch * 0xC2B2AE3D27D4EB4F + index * 0x165667B19E3779F9) % (1 << 63)
    return torch.Generator().manual_seed(mix)


def _randint(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of a float (C, H, W) tensor to ``size`` = (h, w)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_shorter(x: Tensor, side: int) -> Tensor:
    h, w = x.shape[-2:]
    s = side / min(h, w)
    return resize(x, (max(1, round(h * s)), max(1, round(w * s))))


def center_crop(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    if h < size or w < size:
        x = F.pad(x, ((max(0, size - w) + 1) // 2, max(0, size - w) // 2, (max(0, size - h) + 1) // 2,
                      max(0, size - h) // 2))
        h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_crop(x: Tensor, size: int, padding: int, g: torch.Generator) -> Tensor:
    """Zero-pad by ``padding`` then crop ``size`` x ``size`` at a random place."""
    if padding:
        x = F.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    if h < size or w < size:
        x = center_crop(x, max(size, h, w))
        h, w = x.shape[-2:]
    top, left = _randint(0, h - size, g), _randint(0, w - size, g)
    return x[..., top:top + size, left:left + size]


def random_resized_crop(x: Tensor, size: int, g: torch.Generator, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> Tensor:
    """The Inception crop: a random area fraction in ``scale`` and aspect ratio in ``ratio``
    (log-uniform), resized to ``size`` x ``size``; after 10 misses the center crop."""
    h, w = x.shape[-2:]
    area = h * w
    for _ in range(10):
        a = area * _uniform(*scale, g)
        r = math.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), g))
        cw, ch = round(math.sqrt(a * r)), round(math.sqrt(a / r))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = _randint(0, h - ch, g), _randint(0, w - cw, g)
            return resize(x[..., top:top + ch, left:left + cw], (size, size))
    r = w / h
    if r < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif r > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize(x[..., top:top + ch, left:left + cw], (size, size))


def maybe_hflip(x: Tensor, g: torch.Generator, p: float = 0.5) -> Tensor:
    return x.flip(-1) if float(torch.rand((), generator=g)) < p else x


@dataclass
class ClassifyTransform:
    """uint8 (3, H, W) -> normalized float (3, size, size).

    train with ``aug``: ``crop`` (shorter side resized to ``size``, zero-padded by ``padding``,
    random crop; the CIFAR recipe), ``resized_crop`` (the ImageNet recipe) or ``none``; then a
    random horizontal flip unless ``flip=False``. Evaluation (and ``aug='none'``): shorter side
    resized to ``size / crop_ratio``, center crop ``size``.
    """

    size: int
    train: bool
    aug: str = "crop"
    padding: int = 4
    crop_ratio: float = 1.0
    flip: bool = True
    mean: Sequence[float] = CIFAR_MEAN
    std: Sequence[float] = CIFAR_STD
    _mean: Tensor = field(init=False, repr=False)
    _std: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if self.aug not in ("crop", "resized_crop", "none"):
            raise ValueError(f"unknown augmentation {self.aug!r} (crop, resized_crop or none)")
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: Tensor, g: torch.Generator) -> Tensor:
        x = img.float().div_(255)
        if not self.train or self.aug == "none":
            x = center_crop(resize_shorter(x, round(self.size / self.crop_ratio)), self.size)
        elif self.aug == "crop":
            x = random_crop(resize_shorter(x, self.size), self.size, self.padding, g)
        else:
            x = random_resized_crop(x, self.size, g)
        if self.train and self.flip:
            x = maybe_hflip(x, g)
        return ((x - self._mean) / self._std).contiguous()


@dataclass
class UpsampleTransform:
    """(guidance, target) at high resolution -> (target_low, guidance, target).

    train: a random ``crop`` x ``crop`` window (0: the whole image) and a random horizontal flip;
    evaluation: the center window whose sides are the largest multiples of ``factor``.
    ``target_low`` is ``target`` downsampled by ``factor`` (``area``: the mean of each
    factor x factor block; or ``bilinear``/``bicubic`` (antialiased) / ``nearest``).
    """

    factor: int
    train: bool
    crop: int = 0
    flip: bool = True
    downsample: str = "area"

    def __post_init__(self):
        if self.downsample not in ("area", "bilinear", "bicubic", "nearest"):
            raise ValueError(f"unknown downsampling {self.downsample!r} (area, bilinear, bicubic or nearest)")
        if self.crop and self.crop % self.factor:
            raise ValueError(f"the crop size ({self.crop}) must be a multiple of the factor ({self.factor})")

    def low(self, t: Tensor) -> Tensor:
        f = self.factor
        if self.downsample == "area":
            return F.avg_pool2d(t[None], f)[0]
        size = (t.shape[-2] // f, t.shape[-1] // f)
        if self.downsample == "nearest":
            return F.interpolate(t[None], size=size, mode="nearest")[0]
        return F.interpolate(t[None], size=size, mode=self.downsample, align_corners=False, antialias=True)[0]

    def __call__(self, pair: Tuple[Tensor, Tensor], g: torch.Generator) -> Tuple[Tensor, Tensor, Tensor]:
        guide, target = pair
        h, w = target.shape[-2:]
        f = self.factor
        if self.train and self.crop:
            if h < self.crop or w < self.crop:
                raise ValueError(f"images of {h}x{w} are smaller than the crop ({self.crop})")
            top, left = _randint(0, h - self.crop, g), _randint(0, w - self.crop, g)
            ch = cw = self.crop
        else:
            ch, cw = h // f * f, w // f * f
            if not ch or not cw:
                raise ValueError(f"images of {h}x{w} are smaller than the upsampling factor {f}")
            top, left = (h - ch) // 2, (w - cw) // 2
        guide = guide[:, top:top + ch, left:left + cw]
        target = target[:, top:top + ch, left:left + cw]
        if self.train and self.flip and float(torch.rand((), generator=g)) < 0.5:
            guide, target = guide.flip(-1), target.flip(-1)
        guide, target = guide.contiguous(), target.contiguous()
        return self.low(target), guide, target


class Augmented(Dataset):
    """``base[i]`` through ``transform(item, generator(seed, epoch, i))``; the training loop calls
    ``set_epoch`` before each epoch."""

    def __init__(self, base: Dataset, transform: Callable, seed: int = 0):
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        g = sample_generator(self.seed, self.epoch, i)
        if isinstance(item, tuple) and len(item) == 2 and not torch.is_tensor(item[1]):
            return self.transform(item[0], g), item[1]  # (image, label)
        return self.transform(item, g)


# ----------------------------------------------------------------------------------------------
# finding the data


def detect_format(path: str) -> str:
    """``cifar``, ``imagefolder`` or ``arrays`` for a data path (see ``locate``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data path {path!r} does not exist")
    if os.path.isfile(path):
        if path.endswith((".npz", ".npy")):
            return "arrays"
        raise ValueError(f"data file {path!r}: expected an .npz (or a directory)")
    if _cifar_files(path, True)[0] or _cifar_files(path, False)[0]:
        return "cifar"
    if glob.glob(os.path.join(path, "*.npz")) or glob.glob(os.path.join(path, "*_guidance.npy")):
        return "arrays"
    return "imagefolder"


def locate(data: str, split: str, fmt: Optional[str] = None):
    """Where the ``split`` (``train`` or ``val``) of ``data`` is, or None when it has none.

    cifar        ``data`` itself (train: the data batches; val: the test batch).
    imagefolder  ``data/train`` and ``data/val`` (or ``data/test``) when ``data/train`` exists;
                 otherwise ``data`` is the training split and there is no validation split.
    arrays       a file ``data`` (.npz, either split); or in the directory ``data``:
                 ``<split>.npz`` or ``<split>_guidance.npy`` + ``<split>_target.npy``
                 (``val`` also looks for ``test``).
    """
    fmt = fmt or detect_format(data)
    names = [split] + (["test"] if split == "val" else [])
    if fmt == "cifar":
        return data if _cifar_files(data, split == "train")[0] else None
    if fmt == "imagefolder":
        if os.path.isdir(os.path.join(data, "train")):
            for n in names:
                if os.path.isdir(os.path.join(data, n)):
                    return os.path.join(data, n)
            return None
        return data if split == "train" else None
    if os.path.isfile(data):
        return data
    for n in names:
        z = os.path.join(data, f"{n}.npz")
        if os.path.isfile(z):
            return z
        pair = (os.path.join(data, f"{n}_guidance.npy"), os.path.join(data, f"{n}_target.npy"))
        if os.path.isfile(pair[0]) or os.path.isfile(pair[1]):
            return pair
    return None


def open_split(data: str, split: str, fmt: Optional[str] = None) -> Optional[Dataset]:
    """The base dataset of ``split`` in ``data`` (None when there is none)."""
    fmt = fmt or detect_format(data)
    where = locate(data, split, fmt)
    if where is None:
        return None
    if fmt == "cifar":
        return CIFARBinary(where, train=split == "train")
    if fmt == "imagefolder":
        return ImageFolder(where)
    return UpsampleArrays(where)


@dataclass
class DataSpec:
    """How to read and transform the data; stored in checkpoints so ``evaluate`` can rebuild it."""

    data: str
    val_data: Optional[str] = None
    format: str = ""  # cifar / imagefolder / arrays (detected when empty)
    # classification
    image_size: int = 0  # 0: 32 for CIFAR, 224 otherwise
    aug: str = "auto"  # auto: crop for CIFAR, resized_crop otherwise
    padding: int = 4
    crop_ratio: float = 0.0  # 0: 1.0 for CIFAR, 0.875 otherwise
    flip: bool = True
    mean: Optional[Sequence[float]] = None  # None: CIFAR's or ImageNet's statistics
    std: Optional[Sequence[float]] = None
    # joint upsampling
    factor: int = 0
    crop: int = 0
    downsample: str = "area"

    def resolved(self) -> "DataSpec":
        """A copy with the defaults that depend on the format filled in."""
        d = DataSpec(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        d.format = d.format or detect_format(d.data)
        cifar = d.format == "cifar"
        d.image_size = d.image_size or (32 if cifar else 224)
        d.aug = ("crop" if cifar else "resized_crop") if d.aug == "auto" else d.aug
        d.crop_ratio = d.crop_ratio or (1.0 if cifar else 0.875)
        d.mean = tuple(d.mean or (CIFAR_MEAN if cifar else IMAGENET_MEAN))
        d.std = tuple(d.std or (CIFAR_STD if cifar else IMAGENET_STD))
        return d

    @property
    def task(self) -> str:
        return "upsample" if (self.format or detect_format(self.data)) == "arrays" else "classify"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def build_dataset(spec: DataSpec, split: str, train: bool, seed: int = 0) -> Optional[Augmented]:
    """The ``split`` of ``spec.data`` (``spec.val_data`` for ``val`` when given) with the training
    (``train=True``) or evaluation transforms; None when the split does not exist."""
    spec = spec.resolved()
    if split == "val" and spec.val_data:  # a separate source: its val (or test) split, else all of it
        src = spec.val_data
        fmt = detect_format(src)
        if (fmt == "arrays") != (spec.format == "arrays"):
            raise ValueError(f"validation data {src!r} ({fmt}) does not match the task of {spec.data!r} "
                             f"({spec.format})")
        base = open_split(src, "val", fmt) if locate(src, "val", fmt) is not None else open_split(src, "train", fmt)
    else:
        base = open_split(spec.data, split, spec.format)
    if base is None:
        return None
    if spec.task == "upsample":
        if spec.factor < 2:
            raise ValueError("joint upsampling needs the upsampling factor (--factor)")
        tf = UpsampleTransform(spec.factor, train, spec.crop, spec.flip, spec.downsample)
    else:
        tf = ClassifyTransform(spec.image_size, train, spec.aug, spec.padding, spec.crop_ratio, spec.flip,
                               spec.mean, spec.std)
    return Augmented(base, tf, seed)
