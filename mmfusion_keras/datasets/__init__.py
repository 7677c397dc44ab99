"""Bundled datasets and loaders for the datasets users bring.

Bundled (offline, in the package): `load_digits_views`, `load_av_digits`,
`load_speech_text`. Generated from a seed: `load_delta_sequences`. Real datasets, from files the user obtained:
`load_iemocap`, `load_cmu_mosei`, `load_physionet_cmebs`, and any folder
with a `manifest.csv` (`load_manifest`). Front ends: `load_audio`,
`WordTokenizer` / `fit_tokenizer`, `load_minilm`, `load_glove`.
"""

from mmfusion_keras.datasets.audio import load_audio
from mmfusion_keras.datasets.av_digits import add_white_noise
from mmfusion_keras.datasets.av_digits import load_av_digits
from mmfusion_keras.datasets.cmu_mosei import load_cmu_mosei
from mmfusion_keras.datasets.delta_sequences import load_delta_sequences
from mmfusion_keras.datasets.digits_views import load_digits_views
from mmfusion_keras.datasets.iemocap import load_iemocap
from mmfusion_keras.datasets.manifest import load_manifest
from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset
from mmfusion_keras.datasets.physionet_cmebs import load_physionet_cmebs
from mmfusion_keras.datasets.pipeline import MultimodalBatches
from mmfusion_keras.datasets.speech_text import load_speech_text
from mmfusion_keras.datasets.text import WordTokenizer
from mmfusion_keras.datasets.text import fit_tokenizer
from mmfusion_keras.datasets.text import load_glove
from mmfusion_keras.datasets.text import load_minilm
