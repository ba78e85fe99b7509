// Decodes Sparkplug B payloads with Eclipse Tahu's JavaScript library (sparkplug-payload), so the
// tests can check what an independent host reads from PlantLine's payloads.
//
//   node decode.js NODE_MODULES_DIR < lines
//
// Each input line is one payload in base64, optionally followed by a space and a JSON object
// {"<alias>": <datatype code>}: the datatypes a host knows from the birth for metrics that carry
// none (data messages). Tahu's decodePayload reads a metric without a datatype as null, so those
// metrics get their datatype set, with Tahu's own protobuf classes, before it decodes them.
// Each output line is {"payload": <what decodePayload returned>} or {"error": "<message>"}, in
// input order; 64-bit integers (Long) are written as decimal strings, bytes as arrays of numbers,
// NaN and the infinities as strings.
'use strict';

const path = require('path');
const readline = require('readline');

const modules = process.argv[2];
if (!modules) {
  process.stderr.write('usage: node decode.js NODE_MODULES_DIR\n');
  process.exit(2);
}
const sparkplug = require(path.join(modules, 'sparkplug-payload')).get('spBv1.0');
const proto = require(path.join(modules, 'sparkplug-payload', 'lib', 'sparkplugPayloadProto'));
const Long = require(path.join(modules, 'long'));
const Payload = proto.org.eclipse.tahu.protobuf.Payload;

function typedFromBirth(bytes, datatypes) {
  const message = Payload.decode(bytes);
  for (const metric of message.metrics) {
    const hasAlias = Object.prototype.hasOwnProperty.call(metric, 'alias');
    if (!metric.datatype && hasAlias && metric.alias.toString() in datatypes) {
      metric.datatype = datatypes[metric.alias.toString()];
    }
  }
  return Payload.encode(message).finish();
}

function plain(key, value) {
  const original = this[key]; // before toJSON: a Buffer would otherwise become {type, data}
  if (Long.isLong(original)) return original.toString();
  if (original instanceof Uint8Array) return Array.from(original);
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

function decodeLine(line) {
  const space = line.indexOf(' ');
  const encoded = space < 0 ? line : line.slice(0, space);
  try {
    let bytes = Buffer.from(encoded, 'base64');
    if (space >= 0) bytes = typedFromBirth(bytes, JSON.parse(line.slice(space + 1)));
    return { payload: sparkplug.decodePayload(bytes) };
  } catch (error) {
    return { error: String((error && error.message) || error) };
  }
}

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on('line', (line) => {
  if (line.trim()) process.stdout.write(JSON.stringify(decodeLine(line.trim()), plain) + '\n');
});
