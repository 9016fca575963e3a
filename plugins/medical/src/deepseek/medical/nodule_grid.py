"""The fixed grid of ``lung-nodule-attention``, shared by the network, its training and the
detector (which runs without PyTorch in the edge install, so this module imports none)."""

WORKING_SPACING = 1.0  # mm, isotropic: every scan is resampled to it
STRIDE = 2  # input voxels per output cell of the heatmap
WINDOW = (-1000.0, 400.0)  # the HU window scaled to [0, 1] at the input
FPR_CROP = 32  # voxels (mm) of the cube nodule-fpr-3dcnn sees around each candidate

# the detector's defaults, in one place for NoduleDetector, the batch step, `deepseek medical
# detect` and the pipeline
THRESHOLD = 0.02  # lowest probability reported
MAX_CANDIDATES = 100  # per scan
DETECT_WINDOW = 128  # sliding-window edge, voxels (mm)
TTA_TOP = 24  # candidates re-scored by flip test-time augmentation
TTA_FLIPS = "zyx"  # one view, flipped along all three axes
SIZES = 20  # most probable candidates measured on a segmentation
