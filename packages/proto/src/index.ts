/** @cascade/proto: the cascade.v1 wire format and its tensor codec. */
export {
  CodecError,
  ENCODINGS,
  decodeTensor,
  dequantizeInt8,
  elementCount,
  encodeTensor,
  fromHalfBits,
  payloadBytes,
  quantizeInt8,
  toHalfBits,
  type EncodedTensor,
  type Encoding,
} from './codec.js';
export {
  ErrorCode,
  fromWireImage,
  fromWireTensor,
  imageTensor,
  subjects,
  toWireTensor,
  v1,
  type FrameResultMessage,
  type InferReplyMessage,
  type InferRequestMessage,
  type TensorMessage,
} from './wire.js';
