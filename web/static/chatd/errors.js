// @ts-check
// The one error type of REST answers, so apps can tell a refusal (status, code) from a network failure.
/** An error answer from chatd, with its HTTP status and error code. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string|undefined} code
   * @param {string} message
   * @param {number} retryAfter seconds, from Retry-After
   */
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}
