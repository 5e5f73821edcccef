/**
 * The schema builders as the public API exposes them (`s.*`): the view's builders plus
 * `messageId`, which needs the engine's MessageId class and so lives in this layer.
 */
import { fixed, type KeySchema, type LeafSchema } from '../view/schema.js';
import { MessageId } from './message-id.js';

export * from '../view/schema.js';

const messageIdCodec = {
  name: 'MessageId',
  size: 16,
  decode: (bytes: Uint8Array) => MessageId.fromBytes(bytes),
  encode: (value: MessageId) => (value instanceof MessageId ? value.bytes : undefined),
};

/** A MessageId (16 bytes), usable as a map key. */
export function messageId(): KeySchema<MessageId> & LeafSchema<MessageId> {
  return fixed(messageIdCodec);
}
