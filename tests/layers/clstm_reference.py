"""NumPy reference of the multimodal ConvLSTM (Barnum et al., Fig. 5).

Written from the paper's equations, independently of the Keras layer:
plain loops for the 2-D convolutions, float64.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def conv2d(x, kernel, padding="same"):
    """Cross-correlation of `(B, H, W, C)` with `(kh, kw, C, O)`, stride 1."""
    kh, kw, _, out = kernel.shape
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    b, h, w, _ = x.shape
    y = np.zeros((b, h - kh + 1, w - kw + 1, out))
    for r in range(h - kh + 1):
        for s in range(w - kw + 1):
            patch = x[:, r : r + kh, s : s + kw, :]  # (B, kh, kw, C)
            y[:, r, s, :] = np.einsum("bijc,ijco->bo", patch, kernel)
    return y


def cell_step(image, audio_t, h, c, w, padding="same"):
    """One step: gates from image patch, hidden patch and audio frame."""
    z = (
        conv2d(image, w["image_kernel"], padding)
        + conv2d(h, w["recurrent_kernel"], "same")
        + (audio_t @ w["audio_kernel"])[:, None, None, :]
        + w["bias"]
    )
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), np.tanh(z_g), sigmoid(z_o)
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def multimodal_conv_lstm(image, audio, w, padding="same", mask=None):
    """Runs the cell over the audio frames; returns all hidden maps and c.

    A masked frame (`mask[b, t] == False`) keeps the previous h and c.
    """
    filters = w["recurrent_kernel"].shape[2]
    kh, kw = w["image_kernel"].shape[:2]
    b, height, width, _ = image.shape
    if padding == "valid":
        height, width = height - kh + 1, width - kw + 1
    h = np.zeros((b, height, width, filters))
    c = np.zeros_like(h)
    hs = []
    for t in range(audio.shape[1]):
        h_new, c_new = cell_step(image, audio[:, t], h, c, w, padding)
        if mask is not None:
            keep = mask[:, t][:, None, None, None]
            h_new = np.where(keep, h_new, h)
            c_new = np.where(keep, c_new, c)
        h, c = h_new, c_new
        hs.append(h)
    return np.stack(hs, axis=1), c


def conv_lstm(frames, w, padding="same", mask=None):
    """A plain convolutional LSTM (Shi et al., Eq. 3 without peepholes).

    `frames` `(B, T, H, W, C)`, weights `kernel`, `recurrent_kernel`,
    `bias` (gate order i, f, c, o). Returns all hidden maps and the last c.
    A masked frame (`mask[b, t] == False`) keeps the previous h and c.
    """
    filters = w["recurrent_kernel"].shape[2]
    kh, kw = w["kernel"].shape[:2]
    b, _, height, width, _ = frames.shape
    if padding == "valid":
        height, width = height - kh + 1, width - kw + 1
    h = np.zeros((b, height, width, filters))
    c = np.zeros_like(h)
    hs = []
    for t in range(frames.shape[1]):
        z = (
            conv2d(frames[:, t], w["kernel"], padding)
            + conv2d(h, w["recurrent_kernel"], "same")
            + w["bias"]
        )
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
        i, f, g, o = sigmoid(z_i), sigmoid(z_f), np.tanh(z_g), sigmoid(z_o)
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        if mask is not None:
            keep = mask[:, t][:, None, None, None]
            h_new = np.where(keep, h_new, h)
            c_new = np.where(keep, c_new, c)
        h, c = h_new, c_new
        hs.append(h)
    return np.stack(hs, axis=1), c
