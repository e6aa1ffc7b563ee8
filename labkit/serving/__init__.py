"""Serving a language model: a paged KV cache, continuous batching, an OpenAI-compatible server with a
chat page, constrained (JSON) decoding, and tools with an agent loop. One idea per module:

- `paged`: block allocator, block tables, the paged KV cache;
- `engine`: the scheduler (continuous, static, one at a time) on `labkit.llama`;
- `server`: the OpenAI-compatible HTTP API and the chat page (`labkit serve`);
- `constrained`: token masking against a JSON schema written by hand;
- `tools`: a safe calculator, chapter 11's retriever as a tool, and an agent loop (batched: `run_agents`);
- `tooltune`: fine-tuning a chat model on tool-use transcripts (loss on the assistant's tokens only).
"""
