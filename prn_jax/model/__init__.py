"""The network: PRNet's resfcn256 (`resfcn256`), its BatchNorm, convolution and transposed-
convolution formulations, and the released TensorFlow weights' mapping (`tf_weights`)."""

from prn_jax.model.resfcn256 import (
    BN_EPSILON,
    BN_IMPLS,
    BN_MOMENTUM,
    DECODER_LAYERS,
    ENCODER_BLOCKS,
    ConvBN,
    ConvTransposeBN,
    NormOptions,
    ResBlock,
    ResFCN256,
    build_model,
    count_params,
    init_variables,
    position_scale,
    tf_variable_name,
    tf_variable_shapes,
)
