// Minimal Probot app for bench/webhook_intake.py: Probot verifies the X-Hub-Signature-256
// signature (WEBHOOK_SECRET), parses the payload, runs this no-op handler and answers 200.
// Started with: probot run ./bench/probot_app/index.js (APP_ID, PRIVATE_KEY, WEBHOOK_SECRET,
// HOST, PORT, LOG_LEVEL=warn in the environment).
export default (app) => {
  app.onAny(async () => {});
};
