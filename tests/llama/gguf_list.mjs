// gguf_list.mjs — a GGUF file as @huggingface/gguf (the Hugging Face Hub's parser, not ours)
// reads it: the metadata with their value types, the tensor infos (name, shape in GGUF's
// order, ggml type number, offset) and where the data begins, as JSON on stdout.
//
//   node tests/llama/gguf_list.mjs NODE_DIR FILE.gguf
import path from "node:path";
import { pathToFileURL } from "node:url";

const [nodeDir, file] = process.argv.slice(2);
if (!nodeDir || !file) {
  console.error("usage: node gguf_list.mjs NODE_DIR FILE.gguf");
  process.exit(2);
}
const mod = path.join(nodeDir, "node_modules", "@huggingface", "gguf", "dist", "index.mjs");
const { gguf } = await import(pathToFileURL(mod).href);
const out = await gguf(path.resolve(file), { allowLocalFile: true, typedMetadata: true });
const meta = {};
for (const [k, v] of Object.entries(out.typedMetadata)) meta[k] = { type: v.type, value: v.value };
const json = JSON.stringify({
  metadata: meta,
  tensors: out.tensorInfos.map((t) => ({ name: t.name, n_dims: t.n_dims, shape: t.shape.map(Number),
                                         dtype: t.dtype, offset: Number(t.offset) })),
  data_offset: Number(out.tensorDataOffset),
}, (k, v) => (typeof v === "bigint" ? Number(v) : v));
console.log(json);
