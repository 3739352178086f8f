"""Model zoo for the dynamic layers: a registry of constructors.

``get_model(name, **kw)`` builds one of ``MODELS`` (each registered with its metadata,
``model_spec(name)``: see ``registry.py``) (keyword arguments go to its constructor);
``count_parameters(model)`` counts its parameters (trainable only with ``trainable=True``).

===========================  ============================================  ===========================
name                         model                                         parameters
===========================  ============================================  ===========================
``lenet``                    CIFAR LeNet                                   62,006
``lenet_acda``               LeNet, both convolutions ACDA (5x5)           148,784
``ad_resnet_s``              Ad-ResNet-s (ACDA 7x7 in stages 3-4, w = 20)  3,732,972
``ad_resnet_m``              Ad-ResNet-m (w = 38)                          9,895,920
``ad_resnet_l``              Ad-ResNet-l (w = 54)                          18,015,216
``pac_joint_upsample``       PAC joint upsampling, factor 4 / 8 / 16       183,489 / 221,937 / 260,385
``pac_joint_upsample_lite``  its Lite variant, factor 4 / 8 / 16           55,509 / 56,273 / 55,777
``resnet50``                 ResNet-50 (timm's layout and names)           25,557,032
``resnet101``                ResNet-101                                    44,549,160
``ddf_resnet50``             DDF-ResNet-50 (every 3x3 a DDFPack)           16,843,748
``ddf_resnet101``            DDF-ResNet-101                                28,146,912
``ddf_resnet152``            DDF-ResNet-152                                37,462,900
===========================  ============================================  ===========================

(10 classes for the LeNets, 1000 for the Ad-ResNets and ResNets (``num_classes=``); see
``lenet.py``, ``ad_resnet.py`` and ``resnet.py``; the DDF-ResNets take ``kernel_combine='mul'``
(default) or ``'add'``. ``python -m dynfilter_tvm models`` prints the counts and the FLOPs.
The PAC upsamplers need ``factor``, e.g. ``get_model("pac_joint_upsample", factor=8)``; their
counts do not depend on the target's ``channels``; see ``pac_upsample.py``.)
"""
from __future__ import annotations

from . import lenet, ad_resnet, pac_upsample, resnet  # noqa: F401  (register, in this order)
from .ad_resnet import AdResNet, ad_resnet_l, ad_resnet_m, ad_resnet_s
from .lenet import LeNet, LeNetACDA
from .pac_upsample import PacJointUpsample, PacJointUpsampleLite
from .registry import MODELS, SPECS, ModelSpec, count_parameters, get_model, model_spec, register_model
from .resnet import ResNet, ddf_resnet50, ddf_resnet101, ddf_resnet152, resnet50, resnet101

__all__ = ["MODELS", "SPECS", "ModelSpec", "get_model", "model_spec", "register_model", "count_parameters",
           "LeNet", "LeNetACDA", "AdResNet", "ad_resnet_s", "ad_resnet_m", "ad_resnet_l", "PacJointUpsample",
           "PacJointUpsampleLite", "ResNet", "resnet50", "resnet101", "ddf_resnet50", "ddf_resnet101",
           "ddf_resnet152"]
