// Decode captured pushes with the JavaScript CloudEvents SDK (HTTP.toEvent): one JSON message a
// line on stdin ({"headers": {...}, "body": "<base64>"}), one JSON line out per message: the
// event's attributes and data (bytes as {"$bytes": "<base64>"}), or {"error": "..."}.
"use strict";
const { HTTP } = require("cloudevents");
const readline = require("readline");

function plain(value) {
  if (ArrayBuffer.isView(value)) {
    // Element by element: the SDK gives data_base64 as a Uint32Array of byte values.
    return { $bytes: Buffer.from(Array.from(value)).toString("base64"), $type: value.constructor.name };
  }
  return value;
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const message = JSON.parse(line);
  // As a Node server hands it over: JSON and text as a string, anything else as a Buffer.
  const bytes = Buffer.from(message.body, "base64");
  const type = String(message.headers["content-type"] || "").toLowerCase();
  const textual = /json|^text\//.test(type.split(";")[0]);
  const body = textual || bytes.length === 0 ? bytes.toString("utf8") : bytes;
  try {
    const event = HTTP.toEvent({ headers: message.headers, body });
    const attributes = {};
    for (const [name, value] of Object.entries(event)) {
      if (name !== "data" && name !== "data_base64" && value !== undefined) {
        attributes[name] = value;
      }
    }
    process.stdout.write(JSON.stringify({ attributes, data: plain(event.data) }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error && error.message || error) }) + "\n");
  }
});
