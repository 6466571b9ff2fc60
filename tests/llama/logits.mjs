#!/usr/bin/env node
// logits.mjs — llama.cpp's next-token log-probabilities for a fixed token sequence, through
// node-llama-cpp 3.21.1 (its prebuilt CPU binary; nothing is downloaded or built).
//
//   node tests/llama/logits.mjs --model BASE.gguf [--lora ADAPTER.gguf [--lora-scale S]]
//        --tokens 1,17,300,... [--last K] [--threads N] [--node-dir DIR] [--out FILE]
//   node tests/llama/logits.mjs --jobs JOBS --tokens ... [--last K] [--threads N] [--node-dir DIR]
//
// --jobs runs several evaluations in one process (loading node-llama-cpp takes ~1.6 s, a
// run of the tiny model ~40 ms): each line of JOBS is "OUT.json MODEL.gguf [ADAPTER.gguf
// [SCALE]]", each run with a freshly loaded model; a run that fails is reported, the others
// go on, and the exit status is 1.
//
// The tokens are ids, given to llama.cpp as they are (no tokenizer, no BOS added). For every
// position i (or the last K), llama.cpp's distribution of the token after tokens[0..i] is
// printed as log-probabilities over the whole vocabulary, as JSON:
//   {"model", "lora", "lora_scale", "tokens", "n_vocab", "positions": [i...],
//    "logprobs": [[log p(token 0), ..., log p(token n_vocab-1)] per position]}
// (a probability that is 0 in float32 is written as null).
//
// How: getLlama({gpu: false, build: "never", skipDownload: true}); model.createContext({lora:
// {adapters: [{filePath, scale}]}, flashAttention: false, F32 KV cache, threads}); then
// sequence.controlledEvaluate(tokens as [id, {generateNext: {probabilities: true}}]). With
// the default sampler settings (temperature 0: greedy, no penalties, no token bias) the
// addon fills the candidates with all n_vocab logits (llama_get_logits_ith) and returns
// softmax(logits) in float32 over the whole vocabulary, so log p = logit - logsumexp(logits):
// the logits up to one constant per position. node-llama-cpp 3.21.1 has no call that returns
// raw logits.
//
// DIR (where scripts/setup_llama.sh installed node-llama-cpp) is --node-dir, else
// $LLAMA_NODE_DIR, else build/llama-node under the repository.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function usage(msg) {
    if (msg) console.error(`logits.mjs: ${msg}`);
    console.error("usage: node logits.mjs --model BASE.gguf [--lora ADAPTER.gguf [--lora-scale S]] " +
        "--tokens ID,ID,... [--last K] [--threads N] [--node-dir DIR] [--out FILE]\n" +
        "       node logits.mjs --jobs FILE --tokens ID,ID,... [...]   (FILE: lines 'OUT MODEL [ADAPTER [SCALE]]')");
    process.exit(2);
}

const opt = {threads: 1, loraScale: 1, last: 0};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--model") opt.model = v();
    else if (a === "--lora") opt.lora = v();
    else if (a === "--lora-scale") opt.loraScale = Number(v());
    else if (a === "--tokens") opt.tokens = v().split(",").filter((t) => t !== "").map(Number);
    else if (a === "--last") opt.last = Number(v());
    else if (a === "--threads") opt.threads = Number(v());
    else if (a === "--node-dir") opt.nodeDir = v();
    else if (a === "--out") opt.out = v();
    else if (a === "--jobs") opt.jobs = v();
    else usage(`unknown argument ${a}`);
}
if (!opt.model && !opt.jobs) usage("--model (or --jobs) is required");
if (!opt.tokens || opt.tokens.length === 0 || opt.tokens.some((t) => !Number.isInteger(t) || t < 0))
    usage("--tokens must be a comma-separated list of token ids");
if (!Number.isFinite(opt.loraScale)) usage("--lora-scale must be a number");
if (!Number.isInteger(opt.threads) || opt.threads < 1) usage("--threads must be a positive integer");

const nodeDir = path.resolve(opt.nodeDir ?? process.env.LLAMA_NODE_DIR ?? path.join(here, "../../build/llama-node"));
const entry = path.join(nodeDir, "node_modules/node-llama-cpp/dist/index.js");
if (!fs.existsSync(entry)) {
    console.error(`logits.mjs: node-llama-cpp is not installed in ${nodeDir} (run scripts/setup_llama.sh ${nodeDir})`);
    process.exit(77);
}
// never fall back to downloading or building llama.cpp
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
const {getLlama} = await import(pathToFileURL(entry).href);

const llama = await getLlama({
    gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
    progressLogs: false, logLevel: "error", maxThreads: opt.threads
});
if (llama.buildType !== "prebuilt")
    console.error(`logits.mjs: note: node-llama-cpp uses a ${llama.buildType} binary`);

async function evaluate({model: modelPath, lora, loraScale}) {
    // a fresh model per run: LoRA adapters stay attached to the model that loaded them
    const model = await llama.loadModel({modelPath: path.resolve(modelPath), gpuLayers: 0, useMmap: false});
    let nVocab = 0;
    for (const _ of model.iterateAllTokens()) nVocab++;
    for (const t of opt.tokens)
        if (t >= nVocab) throw new Error(`token ${t} is not below the vocabulary size ${nVocab} of ${modelPath}`);
    const n = opt.tokens.length;
    const context = await model.createContext({
        contextSize: Math.max(256, n),
        batchSize: Math.max(256, n),
        sequences: 1,
        threads: opt.threads,
        // all in float32: with node-llama-cpp's defaults (F16 KV cache, flash attention) an
        // adapter run and a merged run differ by 1e-4..1e-3 in log p instead of ~4e-6
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        ...(lora ? {lora: {adapters: [{filePath: path.resolve(lora), scale: loraScale}]}} : {})
    });
    const sequence = context.getSequence();
    const first = opt.last > 0 ? Math.max(0, n - opt.last) : 0;
    const input = opt.tokens.map((t, i) => (i >= first ? [t, {generateNext: {probabilities: true}}] : t));
    const res = await sequence.controlledEvaluate(input);
    const positions = [], logprobs = [];
    for (let i = first; i < n; i++) {
        const probs = res[i]?.next?.probabilities;
        if (!probs || probs.size !== nVocab)
            throw new Error(`position ${i}: expected ${nVocab} probabilities, got ${probs?.size ?? "none"}`);
        const row = new Array(nVocab).fill(null);
        for (const [tok, p] of probs) row[tok] = p > 0 ? Math.log(p) : null;
        positions.push(i);
        logprobs.push(row);
    }
    await context.dispose();
    await model.dispose();
    return JSON.stringify({
        model: path.resolve(modelPath), lora: lora ? path.resolve(lora) : null,
        lora_scale: lora ? loraScale : null, tokens: opt.tokens, n_vocab: nVocab,
        llama_cpp: llama.llamaCppRelease.release, binary: llama.buildType, positions, logprobs
    }) + "\n";
}

let status = 0;
try {
    if (opt.jobs) {
        const lines = fs.readFileSync(opt.jobs, "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
        for (const line of lines) {
            const [out, model, lora, scale] = line.split(/\s+/);
            if (!out || !model) throw new Error(`${opt.jobs}: a line needs OUT and MODEL: ${line}`);
            try {
                fs.writeFileSync(out, await evaluate({model, lora, loraScale: scale === undefined ? 1 : Number(scale)}));
            } catch (e) {
                console.error(`logits.mjs: ${out}: ${e.message}`);
                status = 1;
            }
        }
    } else {
        const out = await evaluate({model: opt.model, lora: opt.lora, loraScale: opt.loraScale});
        if (opt.out) fs.writeFileSync(opt.out, out);
        else process.stdout.write(out);
    }
} catch (e) {
    console.error(`logits.mjs: ${e.message}`);
    status = 1;
}
await llama.dispose();
process.exit(status);
