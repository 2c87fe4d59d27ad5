"""pikku_analyzer"""
