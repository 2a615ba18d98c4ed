export { createApp, openApiDocument, type App, type AppOptions } from './app.js'
