"""Keypoint specs, COCO-format datasets, augmentation, DEKR targets and the LightningDataModule."""

