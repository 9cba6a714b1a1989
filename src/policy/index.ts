export { evaluatePolicy, type Decision, type PolicyTarget } from './evaluate.js';
