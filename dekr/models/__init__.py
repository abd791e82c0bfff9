"""Networks: the timm HRNet backbone, heatmap and offset heads, adaptive convolution."""

