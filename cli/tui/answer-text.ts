// The TUI reads answer text the way the gateway's exports do: one extractor, in shared/.
export { parsedAnswerText as jsonAnswerText, SseAnswerText as SseTextExtractor, sseDataText } from '../../shared/answer-text.js';
