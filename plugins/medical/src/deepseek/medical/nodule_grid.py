"""The fixed grid of ``lung-nodule-attention``, shared by the network, its training and the
detector (which runs without PyTorch in the edge install, so this module imports none)."""

WORKING_SPACING = 1.0  # mm, isotropic: every scan is resampled to it
STRIDE = 2  # input voxels per output cell of the heatmap
WINDOW = (-1000.0, 400.0)  # the HU window scaled to [0, 1] at the input
FPR_CROP = 32  # voxels (mm) of the cube nodule-fpr-3dcnn sees around each candidate
